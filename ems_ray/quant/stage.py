"""`ems-ray export`: measure one searched sub-net at its mixed precision and write ONNX + JSON."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ems_ray.data import build_splits, make_loader
from ems_ray.errors import InputError
from ems_ray.hardware import run_cost_table
from ems_ray.run_layout import RunLayout
from ems_ray.space import SubnetConfig
from ems_ray.supernet.checkpoint import load_supernet

from ._export import ExportedFiles, export_quantized
from .recipe import quantize_subnet

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.config import RunConfig

EXPORT_NAME = "model"  # <out>/model.onnx and model.json


class ExportExistsError(InputError):
    """The output folder holds the export of another sub-net, which `--force` would replace."""


def export_folder(cfg: RunConfig, subnet_path: Path, subnet: SubnetConfig) -> Path:
    """`<run_dir>/export/<file stem>-<sub-net digest>`: one folder per sub-net, so exporting
    another sub-net (say `best.yaml` of another budget) never replaces this one."""
    return RunLayout.of(cfg).export(f"{Path(subnet_path).stem}-{subnet.digest()}")


def check_replaceable(out: Path, subnet: SubnetConfig, force: bool) -> None:
    """Refuse, before any work, to write into a folder that holds another sub-net's export (or an
    export whose sidecar cannot be read), unless `force`; the same sub-net is re-exported in place."""
    onnx, sidecar = out / f"{EXPORT_NAME}.onnx", out / f"{EXPORT_NAME}.json"
    if force or not (onnx.exists() or sidecar.exists()):
        return
    try:
        saved = json.loads(sidecar.read_text())["subnet"]
        same = SubnetConfig.model_validate(saved) == subnet
    except (OSError, ValueError, KeyError, TypeError):
        same = False
    if not same:
        raise ExportExistsError(f"{out} already holds the export of another sub-net (or one whose {sidecar.name} "
                                "cannot be read); pass --force to replace it, or --out another folder")


def export_subnet(cfg: RunConfig, subnet_path: Path, supernet_path: Path | None = None,
                  out_dir: Path | None = None, force: bool = False) -> ExportedFiles:
    """Quantize, fine-tune and evaluate the sub-net in `subnet_path`, then export it to `out_dir`
    (default `export_folder`); an export of another sub-net there is replaced only when `force`."""
    space = cfg.search_space()
    subnet = SubnetConfig.from_yaml(subnet_path, space)  # validated before any work
    out = Path(out_dir) if out_dir is not None else export_folder(cfg, subnet_path, subnet)
    check_replaceable(out, subnet, force)
    layout = RunLayout.of(cfg)
    supernet = load_supernet(supernet_path or layout.supernet, space)
    splits = build_splits(cfg.data)
    train = make_loader(splits.train, cfg.data.batch_size, shuffle=True, seed=cfg.seed)
    val = make_loader(splits.val, cfg.data.eval_batch_size)
    result = quantize_subnet(supernet, subnet, cfg.quant, train, val, seed=cfg.seed)
    files = export_quantized(result.model, subnet, result.policy, out, cost=run_cost_table(cfg), name=EXPORT_NAME,
                             metrics={"val_acc_fp": result.fp_acc, "val_acc_quant": result.quant_acc})
    logger.info(f"[export] float {result.fp_acc:.4f} → quantized {result.quant_acc:.4f} "
                f"({result.seconds:.0f} s); wrote {files.onnx} and {files.sidecar}")
    return files

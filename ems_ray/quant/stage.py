"""`ems-ray export`: measure one searched sub-net at its mixed precision and write ONNX + JSON.

The sidecar's metrics hold the validation accuracies the recipe measured and, on the test split,
the accuracy of the PyTorch fake-quant model and of the exported graph run in ONNX Runtime.

Takes the run's shared settings (`RunContext`: space, data, seed, cost table) and its recipe (`quant`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ems_ray.artifacts import write_artifact
from ems_ray.data import build_splits, make_loader, normalization
from ems_ray.errors import InputError
from ems_ray.hardware import run_cost_table
from ems_ray.space import SubnetConfig
from ems_ray.supernet import evaluate
from ems_ray.supernet.checkpoint import load_supernet

from ._export import ExportedFiles, export_quantized, load_exported
from .recipe import quantize_subnet

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.run_context import RunContext

    from .config import QuantRecipe

EXPORT_NAME = "model"  # <out>/model.onnx and model.json


class ExportExistsError(InputError):
    """The output folder holds the export of another sub-net, which `--force` would replace."""


def export_folder(run: RunContext, subnet_path: Path, subnet: SubnetConfig) -> Path:
    """`<run_dir>/export/<file stem>-<sub-net digest>`: one folder per sub-net, so exporting
    another sub-net (say `best.yaml` of another budget) never replaces this one."""
    return run.layout.export(f"{Path(subnet_path).stem}-{subnet.digest()}")


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


def export_subnet(run: RunContext, quant: QuantRecipe, subnet_path: Path, supernet_path: Path | None = None,
                  out_dir: Path | None = None, force: bool = False) -> ExportedFiles:
    """Quantize, fine-tune and evaluate the sub-net in `subnet_path`, then export it to `out_dir`
    (default `export_folder`); an export of another sub-net there is replaced only when `force`."""
    space = run.search_space()
    subnet = SubnetConfig.from_yaml(subnet_path, space)  # validated before any work
    out = Path(out_dir) if out_dir is not None else export_folder(run, subnet_path, subnet)
    check_replaceable(out, subnet, force)
    supernet = load_supernet(supernet_path or run.layout.supernet, space)
    splits = build_splits(run.data)
    train = make_loader(splits.train, run.data.batch_size, shuffle=True, seed=run.seed)
    val = make_loader(splits.val, run.data.eval_batch_size)
    test = make_loader(splits.test, run.data.eval_batch_size)
    result = quantize_subnet(supernet, subnet, quant, train, val, seed=run.seed)
    test_acc_quant, _ = evaluate(result.model, test)
    metrics = {"val_acc_fp": result.fp_acc, "val_acc_quant": result.quant_acc, "test_acc_quant": test_acc_quant}
    files = export_quantized(result.model, subnet, result.policy, out, cost=run_cost_table(run), name=EXPORT_NAME,
                             calibration=train,
                             calibration_batches=quant.calib_batches, metrics=metrics,
                             normalization=normalization(run.data))
    exported = load_exported(files.sidecar)
    test_acc_onnx, _ = evaluate(exported, test)
    exported.sidecar["metrics"]["test_acc_onnx"] = test_acc_onnx
    write_artifact(files.sidecar, json.dumps(exported.sidecar, indent=2))
    latency = exported.sidecar["runtime"]["latency"]
    logger.info("[export] float %.4f -> quantized %.4f (val, %.0f s); test: fake-quant %.4f, ONNX Runtime %.4f; "
                "%.3f ms at batch 1 on %d thread(s); wrote %s and %s", result.fp_acc, result.quant_acc,
                result.seconds, test_acc_quant, test_acc_onnx, latency["median_ms"], latency["threads"],
                files.onnx, files.sidecar)
    return files

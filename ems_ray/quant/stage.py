"""`ems-ray export`: measure one searched sub-net at its mixed precision and write ONNX + JSON."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ems_ray.data import build_splits, make_loader
from ems_ray.hardware import run_cost_table
from ems_ray.run_layout import RunLayout
from ems_ray.space import SubnetConfig
from ems_ray.supernet.checkpoint import load_supernet

from ._export import ExportedFiles, export_quantized
from .recipe import quantize_subnet

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.config import RunConfig


def export_subnet(cfg: RunConfig, subnet_path: Path, supernet_path: Path | None = None,
                  out_dir: Path | None = None) -> ExportedFiles:
    """Quantize, fine-tune and evaluate the sub-net in `subnet_path`, then export it."""
    space = cfg.search_space()
    subnet = SubnetConfig.from_yaml(subnet_path, space)  # validated before any work
    layout = RunLayout.of(cfg)
    supernet = load_supernet(supernet_path or layout.supernet, space)
    splits = build_splits(cfg.data)
    train = make_loader(splits.train, cfg.data.batch_size, shuffle=True, seed=cfg.seed)
    val = make_loader(splits.val, cfg.data.eval_batch_size)
    result = quantize_subnet(supernet, subnet, cfg.quant, train, val, seed=cfg.seed)
    out = out_dir or layout.export(Path(subnet_path).stem)
    files = export_quantized(result.model, subnet, result.policy, out, cost=run_cost_table(cfg),
                             metrics={"val_acc_fp": result.fp_acc, "val_acc_quant": result.quant_acc})
    logger.info(f"[export] float {result.fp_acc:.4f} → quantized {result.quant_acc:.4f} "
                f"({result.seconds:.0f} s); wrote {files.onnx} and {files.sidecar}")
    return files

"""`ems-ray export`: measure one searched sub-net at its mixed precision and write ONNX + JSON.

The sidecar's metrics hold the validation accuracies the recipe measured and, on the test split,
the accuracy of the PyTorch fake-quant model and of the exported graph run in ONNX Runtime.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ems_ray.data import build_splits, make_loader, normalization
from ems_ray.hardware import run_cost_table
from ems_ray.run_layout import RunLayout
from ems_ray.space import SubnetConfig
from ems_ray.supernet import evaluate
from ems_ray.supernet.checkpoint import load_supernet

from ._export import ExportedFiles, export_quantized, load_exported
from .recipe import quantize_subnet

if TYPE_CHECKING:
    from ems_ray.config import RunConfig

logger = logging.getLogger(__name__)


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
    test = make_loader(splits.test, cfg.data.eval_batch_size)
    result = quantize_subnet(supernet, subnet, cfg.quant, train, val, seed=cfg.seed)
    test_acc_quant, _ = evaluate(result.model, test)
    out = out_dir or layout.export(Path(subnet_path).stem)
    metrics = {"val_acc_fp": result.fp_acc, "val_acc_quant": result.quant_acc, "test_acc_quant": test_acc_quant}
    files = export_quantized(result.model, subnet, result.policy, out, cost=run_cost_table(cfg), calibration=train,
                             calibration_batches=cfg.quant.calib_batches, metrics=metrics,
                             normalization=normalization(cfg.data))
    exported = load_exported(files.sidecar)
    test_acc_onnx, _ = evaluate(exported, test)
    exported.sidecar["metrics"]["test_acc_onnx"] = test_acc_onnx
    files.sidecar.write_text(json.dumps(exported.sidecar, indent=2))
    latency = exported.sidecar["runtime"]["latency"]
    logger.info("float %.4f -> quantized %.4f (val, %.0f s); test: fake-quant %.4f, ONNX Runtime %.4f; "
                "%.3f ms at batch 1 on %d thread(s); wrote %s and %s", result.fp_acc, result.quant_acc,
                result.seconds, test_acc_quant, test_acc_onnx, latency["median_ms"], latency["threads"],
                files.onnx, files.sidecar)
    return files

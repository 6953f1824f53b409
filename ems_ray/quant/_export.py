"""Export of a quantized sub-net: ONNX with QuantizeLinear/DequantizeLinear nodes, plus a JSON sidecar.

Every fake-quant layer exports as Clip → QuantizeLinear → DequantizeLinear on its input and
QuantizeLinear → DequantizeLinear on its weight (int8 for signed grids, uint8 for [0, v]; a
b < 8-bit grid is a subset of those codes, the Clip keeping the input on it), then the float
Conv/Gemm; batch norm follows as a float BatchNormalization. ONNX Runtime runs the file with the
same numbers as the PyTorch model (to float rounding), which `load_exported` relies on.

The sidecar (`<name>.json`) holds what the graph does not: the search space, the sub-net
config, the policy, every layer's bits, ranges and scales, the BitFusion cost and any metrics
the caller measured. Both files are written with their digest beside them (`model.onnx.sha256`,
`model.json.sha256`) and verified on reload. `onnx`, `onnxscript` (the exporter) and
`onnxruntime` (reloading) are optional dependencies, imported when used.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from ems_ray.artifacts import read_verified, write_artifact
from ems_ray.errors import InputError

from ._modules import QuantConv2d, calibrated_quant_layers, quant_layers
from ._policy import QuantPolicy

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable
    from ems_ray.space import SubnetConfig

EXPORT_FORMAT = "ems-ray-quantized-onnx-v1"
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ExportError(InputError, RuntimeError):
    """Export or reload failed (missing optional dependency, damaged, unreadable or mismatched files)."""


RECOVER = "move the export aside and re-run `ems-ray export` to write it again"


def _require(module: str, purpose: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExportError(
            f"{purpose} needs the '{module}' package: pip install onnx onnxscript onnxruntime"
        ) from exc


@dataclass(frozen=True)
class ExportedFiles:
    onnx: Path
    sidecar: Path


def _layer_kind(layer: nn.Module) -> str:
    if not isinstance(layer, QuantConv2d):
        return "fc"
    if layer.groups > 1 and layer.groups == layer.in_channels:
        return "dw"
    return "pw" if layer.kernel_size == (1, 1) else "conv"


def _hardware_cost(cost: CostTable | dict | None, config: SubnetConfig, policy: QuantPolicy) -> dict | None:
    if cost is None or isinstance(cost, dict):
        return cost
    priced = policy.apply_to_config(config)
    out = {k: float(v) for k, v in cost.score_config(priced).items()}
    if policy.fixed_bits is not None and policy.fixed_bits != cost.space.fixed_bits:
        out["note"] = (f"fixed layers priced at the LUT's {cost.space.fixed_bits} bits, "
                       f"quantized at {policy.fixed_bits}")
    return out


def export_quantized(
    model: nn.Module,
    cfg: SubnetConfig,
    policy: QuantPolicy,
    out_dir: str | Path,
    cost: CostTable | dict | None = None,
    *,
    name: str = "model",
    metrics: dict[str, float] | None = None,
    opset: int | None = None,
) -> ExportedFiles:
    """Write `<out_dir>/<name>.onnx` (QDQ graph, batch dimension dynamic) and `<name>.json`.

    `model` is a calibrated fake-quant sub-net (from `apply_policy` + `calibrate`); `cost` a
    `CostTable` (the sub-net is priced with the policy's bits) or an already computed dict;
    `metrics` (e.g. measured accuracy) are stored as given; `opset` None takes the exporter's
    default (QuantizeLinear/DequantizeLinear need 13 or later).
    """
    _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export")
    if opset is not None and opset < 13:
        raise ExportError(f"opset: {opset} too old; QuantizeLinear/DequantizeLinear as exported need 13 or later")
    layers = calibrated_quant_layers(model, "export_quantized", ExportError)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, sidecar_path = out_dir / f"{name}.onnx", out_dir / f"{name}.json"
    traced = out_dir / f".{name}.tmp.onnx"  # the exporter writes a path; the artifact is written from its bytes

    space = model.space
    net = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format).requires_grad_(False)
    for layer in quant_layers(net).values():
        layer.set_export_mode(True)
    example = torch.zeros(2, space.image_channels, space.input_resolution, space.input_resolution)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), torch.no_grad():
            torch.onnx.export(
                net, (example,), str(traced), dynamo=True, opset_version=opset, external_data=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    except Exception as exc:
        traced.unlink(missing_ok=True)
        raise ExportError(f"ONNX export failed: {exc.__class__.__name__}: {exc}\n{log.getvalue()[-2000:]}") from exc
    write_artifact(onnx_path, traced.read_bytes())
    traced.unlink()

    onnx = _require("onnx", "ONNX export")
    graph_opset = next(o.version for o in onnx.load(str(onnx_path)).opset_import if o.domain in ("", "ai.onnx"))
    sidecar: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "onnx": onnx_path.name,
        "opset": int(graph_opset),
        "input": {"name": INPUT_NAME, "shape": ["batch", space.image_channels, space.input_resolution,
                                                  space.input_resolution], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", space.num_classes]},
        "space": space.model_dump(mode="json"),
        "subnet": cfg.model_dump(mode="json"),
        "policy": policy.model_dump(mode="json"),
        "layers": [{"name": n, "kind": _layer_kind(layer), **layer.quant_summary()} for n, layer in layers.items()],
        "qdq_nodes": qdq_node_counts(onnx_path),
        "hardware": _hardware_cost(cost, cfg, policy),
        "metrics": metrics or {},
        "torch_version": torch.__version__,
    }
    write_artifact(sidecar_path, json.dumps(sidecar, indent=2))
    return ExportedFiles(onnx_path, sidecar_path)


def qdq_node_counts(onnx_path: str | Path) -> dict[str, int]:
    """How many QuantizeLinear / DequantizeLinear nodes the ONNX graph holds."""
    onnx = _require("onnx", "reading an ONNX file")
    graph = onnx.load(str(onnx_path)).graph
    ops = [node.op_type for node in graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear")}


class ExportedModel(nn.Module):
    """A reloaded export: runs the ONNX file in ONNX Runtime on CPU; `sidecar` holds the JSON.

    Takes and returns torch tensors so `ems_ray.supernet.evaluate` can score it like the
    PyTorch model.
    """

    def __init__(self, onnx_path: Path, sidecar: dict[str, Any], num_threads: int | None = None,
                 onnx_bytes: bytes | None = None):
        super().__init__()
        ort = _require("onnxruntime", "Reloading an export")
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        model = onnx_bytes if onnx_bytes is not None else str(onnx_path)
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.sidecar = sidecar
        self.onnx_path = onnx_path

    @property
    def config(self):
        from ems_ray.space import SubnetConfig

        return SubnetConfig.model_validate(self.sidecar["subnet"])

    @property
    def policy(self) -> QuantPolicy:
        return QuantPolicy.model_validate(self.sidecar["policy"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().float().numpy())
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(logits)


def load_exported(path: str | Path, num_threads: int | None = None) -> ExportedModel:
    """Reload an export: `path` is its folder (holding one export), its `.json` or its `.onnx`;
    both files are checked against their digests first."""
    path = Path(path)
    if path.is_dir():
        sidecars = sorted(path.glob("*.json"))
        if len(sidecars) != 1:
            raise ExportError(f"{path}: expected one export sidecar (*.json), found {[p.name for p in sidecars]}")
        path = sidecars[0]
    sidecar_path = path.with_suffix(".json")
    if not sidecar_path.is_file():
        raise ExportError(f"export sidecar not found: {sidecar_path}")
    try:
        sidecar = json.loads(read_verified(sidecar_path, "export sidecar", ExportError, RECOVER))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{sidecar_path} is not valid JSON: {exc}") from exc
    if sidecar.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{sidecar_path} is not an ems-ray export (expected format {EXPORT_FORMAT})")
    onnx_path = sidecar_path.parent / sidecar["onnx"]
    if not onnx_path.is_file():
        raise ExportError(f"ONNX file named by {sidecar_path.name} not found: {onnx_path}")
    onnx_bytes = read_verified(onnx_path, "exported ONNX file", ExportError, RECOVER)
    return ExportedModel(onnx_path, sidecar, num_threads, onnx_bytes).eval()

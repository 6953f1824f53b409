"""Export of a quantized sub-net: an ONNX graph that ONNX Runtime runs with integer kernels, plus a JSON sidecar.

The calibrated fake-quant model becomes a BN-folded float graph holding its quantized weights and
input clamps (`_deploy.deploy_graph`), exported by the PyTorch exporter and quantized by ONNX
Runtime's static quantizer with our scales as overrides (`_onnx_int8.quantize_int8`): every
quantized conv runs as `QLinearConv` (uint8 activations, int8 per-channel weights, int32 bias,
ReLU6 folded into the output range), residual adds as `QLinearAdd`, the classifier as `QGemm`.
Layers below 8 bits keep their codes on the 8-bit grid (a `Clip` on the codes; real bits in the
sidecar). Export profiles one run and measures the latency in ONNX Runtime.

The sidecar (`<name>.json`) holds what a deployer needs beside the graph: input shape, layout,
channel order and normalisation, the search space, sub-net config and policy, every layer's bits,
ranges and integer grid, the kernels ONNX Runtime executed, its latency at export time, the
BitFusion cost and the caller's metrics (accuracies). `onnx`, `onnxscript` (the exporter) and
`onnxruntime` are optional dependencies, imported when used. Both files are written with
their digest beside them (`model.onnx.sha256`, `model.json.sha256`) and verified on reload.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from ems_ray.artifacts import read_verified, write_artifact
from ems_ray.errors import InputError

from ._deploy import deploy_graph, folded_weight_scales, input_grid
from ._modules import QuantConv2d, calibrated_quant_layers
from ._policy import QuantPolicy
from ._runtime import cpu_name, executed_ops, measure_latency, ort_session, resolve_weight_storage

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable
    from ems_ray.space import SubnetConfig

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "ems-ray-int8-onnx-v2"
INPUT_NAME, OUTPUT_NAME = "images", "logits"
CHANNEL_ORDER = {1: "grey", 3: "RGB"}


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


def _image_batches(calibration: Iterable, num_batches: int) -> list[np.ndarray]:
    batches = []
    for item in islice(calibration, num_batches):
        images = item[0] if isinstance(item, (tuple, list)) else item
        batches.append(np.ascontiguousarray(torch.as_tensor(images).detach().cpu().float().numpy()))
    if not batches:
        raise ExportError("calibration: no image batches (pass a loader or a list of image tensors)")
    return batches


def export_float_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...],
                      opset: int | None = None) -> Path:
    """Export a float network (a `StaticSubNet`, or `deploy_graph`'s output) to ONNX, batch dynamic.

    `input_shape` is one image's (C, H, W). The float baseline of an integer export is the same
    sub-net through this function.
    """
    path, log = Path(path), io.StringIO()
    example = torch.zeros(2, *input_shape)
    try:
        with contextlib.redirect_stdout(log), torch.no_grad():
            torch.onnx.export(
                model.cpu().eval(), (example,), str(path), dynamo=True, opset_version=opset, external_data=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    except Exception as exc:
        raise ExportError(f"ONNX export failed: {exc.__class__.__name__}: {exc}\n{log.getvalue()[-2000:]}") from exc
    return path


def int8_onnx_bytes(model: nn.Module, batches: list[np.ndarray], opset: int | None = None,
                    weight_storage: str = "auto") -> bytes:
    """The integer QDQ graph of a calibrated fake-quant sub-net (no sidecar, nothing measured): what
    `export_quantized` writes, and what a measured latency table times whole sub-nets with.
    `weight_storage`: see `resolve_weight_storage`."""
    from ._onnx_int8 import quantize_int8

    storage, _ = resolve_weight_storage(weight_storage)
    layers = calibrated_quant_layers(model, "export_quantized", ExportError)
    space = model.space
    input_shape = (space.image_channels, space.input_resolution, space.input_resolution)
    graph_module = deploy_graph(model)
    grids = {n: input_grid(layer) for n, layer in layers.items()}
    weight_scales = {n: folded_weight_scales(layer, graph_module.get_submodule(n).weight).numpy()
                     for n, layer in layers.items()}
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        export_float_onnx(graph_module, float_path, input_shape, opset)
        int8_path = Path(tmp) / "int8.onnx"
        quantize_int8(float_path, int8_path, grids, weight_scales, batches, INPUT_NAME, storage)
        return int8_path.read_bytes()


def _layer_entry(name: str, layer) -> dict[str, Any]:
    grid = input_grid(layer)
    n_w = 2 ** (layer.w_bits - 1) - 1
    return {"name": name, "kind": _layer_kind(layer), **layer.quant_summary(),
            "input_grid": {"dtype": "uint8", "scale": grid.scale, "zero_point": grid.zero_point,
                           "codes": [grid.lo, grid.hi]},
            "weight_grid": {"dtype": "int8", "per_channel": isinstance(layer, QuantConv2d), "codes": [-n_w, n_w]}}


def export_quantized(
    model: nn.Module,
    cfg: SubnetConfig,
    policy: QuantPolicy,
    out_dir: str | Path,
    cost: CostTable | dict | None = None,
    *,
    calibration: Iterable,
    calibration_batches: int = 4,
    name: str = "model",
    metrics: dict[str, float] | None = None,
    normalization: dict[str, list[float]] | None = None,
    opset: int | None = None,
    latency_threads: int = 1,
    latency_repeats: int = 50,
    weight_storage: str = "auto",
) -> ExportedFiles:
    """Write `<out_dir>/<name>.onnx` (integer QDQ graph, batch dimension dynamic) and `<name>.json`.

    `model` is a calibrated fake-quant sub-net (from `apply_policy` + `calibrate`);
    `calibration` yields image batches (or (images, labels)), of which `calibration_batches`
    range the tensors our policy does not quantize (residual sums, projection outputs); `cost` a
    `CostTable` (the sub-net is priced with the policy's bits) or an already computed dict;
    `metrics` (e.g. measured accuracy) are stored as given; `normalization` ({"mean", "std"} per
    channel) is what the input expects; `opset` None takes the exporter's default (13 or later
    needed). The latency is measured at batch 1 on `latency_threads` threads. `weight_storage`:
    "int8", "uint8" (the same codes shifted by 128) or "auto" (`resolve_weight_storage`: int8 where
    ONNX Runtime's u8×s8 kernels are exact on this host, uint8 on x86 without VNNI, where they
    saturate).
    """
    _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export")
    _require("onnxruntime", "ONNX export")
    if opset is not None and opset < 13:
        raise ExportError(f"opset: {opset} too old; per-channel QuantizeLinear/DequantizeLinear need 13 or later")
    layers = calibrated_quant_layers(model, "export_quantized", ExportError)
    storage, storage_why = resolve_weight_storage(weight_storage)
    batches = _image_batches(calibration, calibration_batches)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, sidecar_path = out_dir / f"{name}.onnx", out_dir / f"{name}.json"
    space = model.space
    input_shape = (space.image_channels, space.input_resolution, space.input_resolution)
    write_artifact(onnx_path, int8_onnx_bytes(model, batches, opset, storage))

    onnx = _require("onnx", "ONNX export")
    ort = _require("onnxruntime", "ONNX export")
    graph = onnx.load(str(onnx_path))
    graph_opset = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    executed = executed_ops(onnx_path, INPUT_NAME, input_shape, batch=1, threads=latency_threads)
    n_convs = sum(isinstance(layer, QuantConv2d) for layer in layers.values())
    if executed.integer_convs < n_convs:
        logger.warning("ONNX Runtime %s ran %d of the %d quantized convs as integer kernels (executed: %s)",
                       ort.__version__, executed.integer_convs, n_convs, executed.counts)
    latency = measure_latency(onnx_path, INPUT_NAME, input_shape, batch=1, threads=latency_threads,
                              repeats=latency_repeats)
    sidecar: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "onnx": onnx_path.name,
        "opset": int(graph_opset),
        "input": {"name": INPUT_NAME, "shape": ["batch", *input_shape], "dtype": "float32", "layout": "NCHW",
                  "channel_order": CHANNEL_ORDER.get(space.image_channels, f"{space.image_channels} channels"),
                  "normalization": None if normalization is None else {
                      **normalization, "formula": "(pixel / 255 - mean) / std, per channel"}},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", space.num_classes], "dtype": "float32",
                   "meaning": "logits (argmax: the class)"},
        "space": space.model_dump(mode="json"),
        "subnet": cfg.model_dump(mode="json"),
        "policy": policy.model_dump(mode="json"),
        "layers": [_layer_entry(n, layer) for n, layer in layers.items()],
        "graph_ops": onnx_op_counts(onnx_path),
        "runtime": {
            "onnxruntime": ort.__version__, "provider": "CPUExecutionProvider", "cpu": cpu_name(),
            "executed_ops": executed.counts, "integer_convs": executed.integer_convs, "quantized_convs": n_convs,
            "latency": latency.as_dict(),
            "weight_storage": {"type": storage, "why": storage_why},
        },
        "hardware": _hardware_cost(cost, cfg, policy),
        "metrics": metrics or {},
        "torch_version": torch.__version__,
    }
    write_artifact(sidecar_path, json.dumps(sidecar, indent=2))
    return ExportedFiles(onnx_path, sidecar_path)


def onnx_op_counts(onnx_path: str | Path) -> dict[str, int]:
    """Op types of the ONNX graph file and how many nodes of each (before ONNX Runtime's fusions)."""
    onnx = _require("onnx", "reading an ONNX file")
    return dict(sorted(Counter(node.op_type for node in onnx.load(str(onnx_path)).graph.node).items()))


class ExportedModel(nn.Module):
    """A reloaded export: runs the ONNX file in ONNX Runtime on CPU; `sidecar` holds the JSON.

    Takes and returns torch tensors so `ems_ray.supernet.evaluate` can score it like the
    PyTorch model.
    """

    def __init__(self, onnx_path: Path, sidecar: dict[str, Any], num_threads: int | None = None,
                 onnx_bytes: bytes | None = None):
        super().__init__()
        _require("onnxruntime", "Reloading an export")
        self.session = ort_session(onnx_bytes if onnx_bytes is not None else onnx_path, num_threads)
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

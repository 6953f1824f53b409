"""From the BN-folded float ONNX graph to a QDQ graph that ONNX Runtime runs with integer kernels.

ONNX Runtime's own static quantizer (`onnxruntime.quantization.quantize_static`, QDQ format)
does the work; our policy is passed to it as tensor overrides, so the scales are the searched
ones, not ONNX Runtime's:

- every quantized layer's input: our scale and zero point (`IntegerGrid`);
- every quantized layer's weight: per output channel, int8, scale weight_scale * |k_c| (the
  batch norm folded in, see `_deploy`); the bias becomes int32 at input scale * weight scale;
- the tensors our policy does not quantize but an integer graph must (a projection conv's output,
  a residual sum, the head conv's output) get ONNX Runtime's own 8-bit ranges, calibrated (min/max)
  on the images passed in;
- a tensor that feeds a quantized layer *and* a residual skip (`shared_grid`) is stored, where the
  layer's range holds what the skip needs, on a grid m times finer than the layer's (m odd, as
  fine as the range allows), so re-quantizing it onto the layer's grid is exact: with m odd,
  rounding to the fine grid and then to the coarse one equals rounding to the coarse one directly;
- the classifier's output stays float (QGemm with a float output).

One step the quantizer cannot express is done here on its output: a layer with fewer than 8 bits
keeps its codes in [lo, hi] with a `Clip` on the uint8 codes right after its QuantizeLinear (the
quantizer relies on uint8 saturation, which clips at 0..255); where the quantizer kept the float
clamp of `deploy_graph` in front of a QuantizeLinear (the input is shared with a residual skip),
that clamp moves onto the codes the same way. Both are exact: clamping to [-v, v] and rounding at
scale v/n is rounding and then clamping the codes to [-n, n].
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._deploy import UINT8_MAX, IntegerGrid

if TYPE_CHECKING:
    import onnx

QUANTIZED_OP_TYPES = ("Conv", "Gemm")


def _graph_index(graph) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return producer, consumers


def _sorted_topologically(graph) -> None:
    """Reorder `graph.node` so each node follows its inputs' producers (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    ordered, pending = [], list(graph.node)
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise RuntimeError(f"ONNX graph has a cycle or a dangling input at {[n.name for n in rest[:3]]}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


# Unsigned layer inputs come out of a ReLU6 (see `QuantPolicy.layer_bits`); the quantizer drops the
# ReLU6 and relies on the grid's saturation, so a grid for such a tensor must end at or below 6.
RELU6_MAX = 6.0


def shared_grid(grid: IntegerGrid, needed: float) -> IntegerGrid | None:
    """The grid of a tensor feeding both a layer on `grid` and a skip: scale grid.scale / m, m odd.

    The finest such grid whose range still holds `needed` (the largest magnitude seen); for an
    unsigned tensor (a ReLU6 output) it must also end at or below 6. None when even m = 1 cannot
    hold `needed`: the layer's range clips what the skip needs, so the tensor keeps the
    quantizer's own min/max grid and the layer's input is rounded twice (slightly coarser).
    """
    top = grid.scale * (UINT8_MAX - grid.zero_point if grid.zero_point else UINT8_MAX)
    m = int(top / max(needed, 1e-12))
    m = m if m % 2 else m - 1
    if not grid.zero_point:
        while m >= 1 and top / m > RELU6_MAX:
            m += 2
    if m < 1 or top / m < needed:
        return None
    return IntegerGrid(grid.scale / m, grid.zero_point, 0, UINT8_MAX)


def _override(grid: IntegerGrid) -> list[dict]:
    return [{"scale": np.array(grid.scale, np.float32), "zero_point": np.array(grid.zero_point, np.uint8)}]


def shared_tensors(model: onnx.ModelProto, input_grids: Mapping[str, IntegerGrid]) -> dict[str, IntegerGrid]:
    """Tensors that reach a layer's input clamp and also other consumers, with that layer's grid."""
    producer, consumers = _graph_index(model.graph)
    shared = {}
    for x, grid in input_grids.items():
        clamp = producer.get(x)
        if clamp is not None and clamp.op_type == "Clip" and len(consumers.get(clamp.input[0], [])) > 1:
            shared[clamp.input[0]] = grid
    return shared


def largest_magnitudes(model: onnx.ModelProto, names: Iterable[str], batches: list[np.ndarray],
                       input_name: str) -> dict[str, float]:
    """max |t| of each named tensor of the float graph over the calibration batches."""
    from onnx import helper

    from ._runtime import ort_session

    names = list(names)
    if not names:
        return {}
    probe = copy.deepcopy(model)
    probe.graph.output.extend([helper.make_empty_tensor_value_info(name) for name in names])
    session = ort_session(probe.SerializeToString(), None)
    out = dict.fromkeys(names, 0.0)
    for batch in batches:
        for name, value in zip(names, session.run(names, {input_name: batch})):
            out[name] = max(out[name], float(np.abs(value).max()))
    return out


def layer_overrides(model: onnx.ModelProto, grids: Mapping[str, IntegerGrid],
                    weight_scales: Mapping[str, np.ndarray], weight_storage: str = "int8"
                    ) -> tuple[dict[str, list[dict]], dict[str, IntegerGrid]]:
    """`TensorQuantOverrides` for our layers, and the grid of each layer's input tensor by name.

    A layer is found by its weight initializer `<layer>.weight` (the names `deploy_graph` keeps).
    Weight codes are symmetric; `weight_storage` "uint8" stores them shifted by 128 (zero point 128).
    """
    weight_zero = np.array(128, np.uint8) if weight_storage == "uint8" else np.array(0, np.int8)
    by_weight = {node.input[1]: node for node in model.graph.node if node.op_type in QUANTIZED_OP_TYPES}
    missing = [name for name in grids if f"{name}.weight" not in by_weight]
    if missing:
        raise RuntimeError(f"quantized layers not found in the exported graph: {missing[:5]}")
    overrides: dict[str, list[dict]] = {}
    input_grids: dict[str, IntegerGrid] = {}
    for name, grid in grids.items():
        x = by_weight[f"{name}.weight"].input[0]
        overrides[x] = _override(grid)
        input_grids[x] = grid
        overrides[f"{name}.weight"] = [
            {"axis": 0, "scale": np.array(s, np.float32), "zero_point": weight_zero}
            for s in np.asarray(weight_scales[name], dtype=np.float64)
        ]
    return overrides, input_grids


def excluded_nodes(model: onnx.ModelProto, grids: Mapping[str, IntegerGrid]) -> list[str]:
    """Conv/Gemm nodes of layers the policy leaves in float (they stay float in the graph)."""
    ours = {f"{name}.weight" for name in grids}
    return [node.name for node in model.graph.node
            if node.op_type in QUANTIZED_OP_TYPES and node.input[1] not in ours]


def restrict_codes(model: onnx.ModelProto, input_grids: Mapping[str, IntegerGrid]) -> int:
    """Put each layer input's codes on its b-bit grid (see the module docstring); returns the Clips added."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producer, consumers = _graph_index(graph)
    quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in input_grids]
    if len(quantizers) != len(input_grids):
        raise RuntimeError(f"expected one QuantizeLinear per quantized layer input ({len(input_grids)}), "
                           f"found {len(quantizers)}")
    dropped, added = set(), 0
    for q in quantizers:
        grid = input_grids[q.input[0]]
        clamp = producer.get(q.input[0])
        if clamp is not None and clamp.op_type == "Clip":
            q.input[0] = clamp.input[0]
            dropped.add(id(clamp))
        if not grid.narrower_than_storage:
            continue
        codes, clipped = q.output[0], f"{q.output[0]}_codes"
        graph.initializer.extend([numpy_helper.from_array(np.array(grid.lo, np.uint8), f"{clipped}_lo"),
                                  numpy_helper.from_array(np.array(grid.hi, np.uint8), f"{clipped}_hi")])
        for consumer in consumers.get(codes, []):
            for i, name in enumerate(consumer.input):
                if name == codes:
                    consumer.input[i] = clipped
        graph.node.append(helper.make_node("Clip", [codes, f"{clipped}_lo", f"{clipped}_hi"], [clipped], name=clipped))
        added += 1
    kept = [n for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    _sorted_topologically(graph)
    return added


def quantize_int8(float_onnx: Path, out_onnx: Path, grids: Mapping[str, IntegerGrid],
                  weight_scales: Mapping[str, np.ndarray], calibration: Iterable[np.ndarray],
                  input_name: str, weight_storage: str = "int8") -> dict[str, int]:
    """Write the integer QDQ graph of `float_onnx` (from `deploy_graph`) to `out_onnx`.

    `grids` / `weight_scales`: by layer name, the input grid and the folded per-channel weight
    scales; `calibration`: image batches for the tensors our policy does not quantize.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class ImageReader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    model = onnx.load(str(float_onnx))
    batches = list(calibration)
    overrides, input_grids = layer_overrides(model, grids, weight_scales, weight_storage)
    shared = shared_tensors(model, input_grids)
    needed = largest_magnitudes(model, shared, batches, input_name)
    fine = {name: shared_grid(grid, needed[name]) for name, grid in shared.items()}
    overrides.update({name: _override(g) for name, g in fine.items() if g is not None})
    quantize_static(
        model, str(out_onnx), ImageReader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QUInt8 if weight_storage == "uint8" else QuantType.QInt8,
        nodes_to_exclude=excluded_nodes(model, grids),
        extra_options={"TensorQuantOverrides": overrides, "OpTypesToExcludeOutputQuantization": ["Gemm"]},
    )
    quantized = onnx.load(str(out_onnx))
    clips = restrict_codes(quantized, input_grids)
    onnx.checker.check_model(quantized)
    onnx.save(quantized, str(out_onnx))
    return {"code_clips": clips, "shared_tensors": len(shared),
            "shared_on_refined_grid": sum(g is not None for g in fine.values())}

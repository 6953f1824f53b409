"""A latency table measured in ONNX Runtime: every layer a space can produce, timed on this host.

Pure core (no Ray): `measure_job` times one item, a layer or a whole sub-net, and says which host
timed it; `build_measured_lut` plans the items, runs them through a `runner` (in this process by
default; `ray_runner` in `_ray_build` sends them to the node type the config names), writes what is
done as it goes (`<table>.partial.json`, with its digest) so that a rerun measures only what is
missing, and fits how whole networks differ from the sum of their layers.

A layer is timed as a model of its own, through the same integer path as an export
(`quantize_int8`: `quantize_static` with our scales as overrides): float input -> QuantizeLinear ->
QLinearConv (QGemm for the classifier) -> DequantizeLinear. Its float graph is written directly
with `onnx.helper` (a Conv or Gemm node; the PyTorch exporter takes ~10 s a model, 217 of them on
fmnist-small) and has random weights: integer kernels take the same time whatever the values.

Whole networks are not the sum of such layers: the layer models pay a Q/DQ pair at each end that
a network pays once, and a network adds residual QLinearAdds, pooling and the runtime's per-run
cost. `NetworkFit` is `latency = constant + scale * sum(layer medians) + per_layer * layers`,
least squares over `calibration_subnets` whole sub-nets exported as `ems-ray export` does.
"""
from __future__ import annotations

import json
import logging
import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ems_ray.artifacts import read_verified, remove_artifact, write_artifact
from ems_ray.space import Genome, SearchSpace, space_fingerprint

from .layers import ConvLayer, enumerate_layers, subnet_layers
from .targets import OnnxRuntimeTarget

logger = logging.getLogger(__name__)

OPSET = 20  # the PyTorch exporter's, so layer and sub-net graphs use the same op versions
INPUT_NAME = "x"
Runner = Callable[[Callable[[dict], dict], list[dict]], Iterator[tuple[dict, dict]]]


class MeasurementError(RuntimeError):
    """A measured table that cannot be built: a partial build from another host or target, mixed hosts."""


# ----- host ------------------------------------------------------------------------------------
def host_info(target: OnnxRuntimeTarget) -> dict:
    """What a measurement is only valid for: CPU model, onnxruntime version, provider, threads, batch."""
    import onnxruntime as ort

    from ems_ray.quant import cpu_name

    return {"cpu": cpu_name(), "machine": platform.machine(), "onnxruntime": ort.__version__,
            "provider": target.provider_name, "threads": target.threads, "batch": target.batch}


def host_mismatch(stored: dict, current: dict) -> list[str]:
    """The fields (cpu, onnxruntime) on which a table's measuring host differs from `current`."""
    return [f"{k} '{stored.get(k)}' (here '{current.get(k)}')" for k in ("cpu", "onnxruntime")
            if stored.get(k) != current.get(k)]


# ----- one layer as an integer ONNX model --------------------------------------------------------
def layer_key(layer: ConvLayer, wbits: int, abits: int) -> str:
    return (f"{layer.kind}:{layer.in_channels}:{layer.out_channels}:{layer.kernel}:{layer.stride}:"
            f"{layer.in_h}:{layer.in_w}:w{wbits}a{abits}")


def layer_from_key(key: str) -> tuple[ConvLayer, int, int]:
    kind, *dims, bits = key.split(":")
    w, a = bits[1:].split("a")
    return ConvLayer(kind, *map(int, dims)), int(w), int(a)


def input_shape(layer: ConvLayer) -> tuple[int, ...]:
    return (layer.in_channels,) if layer.kind == "fc" else (layer.in_channels, layer.in_h, layer.in_w)


def layer_float_onnx(layer: ConvLayer, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """The float graph of one layer (weights named `layer.weight`, as `quantize_int8` expects) and
    the per-channel scales of its weights, whose values are codes * scale exactly."""
    from onnx import TensorProto, helper, numpy_helper

    out = layer.out_channels
    per_group = 1 if layer.kind == "dw" else layer.in_channels
    shape = (out, per_group) if layer.kind == "fc" else (out, per_group, layer.kernel, layer.kernel)
    scales = rng.uniform(0.005, 0.02, out).astype(np.float32)
    codes = rng.integers(-127, 128, shape).astype(np.float32)
    weight = codes * scales.reshape((out,) + (1,) * (len(shape) - 1))
    inits = [numpy_helper.from_array(weight, "layer.weight"),
             numpy_helper.from_array(rng.normal(0, 0.1, out).astype(np.float32), "layer.bias")]
    if layer.kind == "fc":
        node = helper.make_node("Gemm", [INPUT_NAME, "layer.weight", "layer.bias"], ["y"], name="layer", transB=1)
        dims = ["batch", layer.in_channels]
    else:
        pad = layer.kernel // 2
        node = helper.make_node("Conv", [INPUT_NAME, "layer.weight", "layer.bias"], ["y"], name="layer",
                                kernel_shape=[layer.kernel] * 2, strides=[layer.stride] * 2, pads=[pad] * 4,
                                group=layer.in_channels if layer.kind == "dw" else 1)
        dims = ["batch", layer.in_channels, layer.in_h, layer.in_w]
    graph = helper.make_graph([node], "layer", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return model.SerializeToString(), scales


def layer_int8_onnx(layer: ConvLayer, wbits: int, abits: int, seed: int) -> bytes:
    """One layer through `quantize_int8`: uint8 input on the `abits` grid, per-channel weights stored as
    an export on this host stores them (`deployed_weight_storage`)."""
    import tempfile

    from ems_ray.quant import IntegerGrid
    from ems_ray.quant._onnx_int8 import quantize_int8
    from ems_ray.quantizers import quant_levels

    rng = np.random.default_rng([seed, *map(ord, layer_key(layer, wbits, abits))])
    float_bytes, scales = layer_float_onnx(layer, rng)
    n = quant_levels(abits, False)
    grid = IntegerGrid(6.0 / n, 0, 0, n)  # a ReLU6 output on abits codes
    calibration = [np.abs(rng.normal(0, 2, (2, *input_shape(layer)))).clip(0, 6).astype(np.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(float_bytes)
        quantize_int8(src, dst, {"layer": grid}, {"layer": scales}, calibration, INPUT_NAME, deployed_weight_storage())
        return dst.read_bytes()


def deployed_weight_storage() -> str:
    """The weight storage an export on this host uses (`resolve_weight_storage("auto")`): the table
    times the kernels the deployed model runs."""
    from ems_ray.quant._runtime import resolve_weight_storage

    return resolve_weight_storage("auto")[0]


# ----- one whole sub-net --------------------------------------------------------------------------
_SUPERNETS: dict[str, object] = {}
SIGNED_RANGE, UNSIGNED_RANGE = 3.0, 4.0  # input ranges of the built graph's layers (values do not change speed)


class _GraphBuilder:
    """The float graph `deploy_graph` + the PyTorch exporter write for a sub-net, op for op (Conv with
    bias, Clip for ReLU6 and for each layer's input range, Add for residuals, ReduceMean, Gemm),
    with random weights: ~0.1 s instead of the exporter's ~10-50 s a sub-net on this CPU."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.nodes, self.inits, self.grids, self.scales = rng, [], [], {}, {}

    def const(self, value: float) -> str:
        from onnx import numpy_helper

        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.array(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def clip(self, x: str, lo: float, hi: float) -> str:
        return self.node("Clip", [x, self.const(lo), self.const(hi)])

    def layer(self, name: str, x: str, layer: ConvLayer, bits: int, signed: bool, first: bool = False) -> str:
        """A quantized layer with its input clamp (none on the network input, as `deploy_graph`)."""
        from onnx import numpy_helper

        from ems_ray.quant import IntegerGrid
        from ems_ray.quantizers import quant_levels

        n = quant_levels(bits, signed)
        v = SIGNED_RANGE if signed else UNSIGNED_RANGE
        grid = IntegerGrid(v / n, 128, 128 - n, 128 + n) if signed else IntegerGrid(v / n, 0, 0, n)
        if not first:
            x = self.clip(x, *grid.real_range)
        float_bytes, scales = layer_float_onnx(layer, self.rng)
        self.grids[name], self.scales[name] = grid, scales
        from onnx import load_from_string

        single = load_from_string(float_bytes)
        for init in single.graph.initializer:
            self.inits.append(numpy_helper.from_array(numpy_helper.to_array(init), init.name.replace("layer", name)))
        attrs = {a.name: __import__("onnx").helper.get_attribute_value(a) for a in single.graph.node[0].attribute}
        return self.node(single.graph.node[0].op_type, [x, f"{name}.weight", f"{name}.bias"], **attrs)

    def model(self, output: str, channels: int, resolution: int) -> bytes:
        from onnx import TensorProto, helper

        self.nodes[-1].output[0] = "logits"
        graph = helper.make_graph(
            self.nodes, "subnet",
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", channels, resolution, resolution])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]).SerializeToString()


def subnet_float_onnx(space: SearchSpace, config, rng: np.random.Generator) -> tuple[bytes, dict, dict]:
    """(float graph, input grid and weight scales by layer name) of a sub-net, for `quantize_int8`."""
    from ems_ray.quant import QuantPolicy

    policy = QuantPolicy.from_subnet(config, space)
    layers = subnet_layers(space, config)
    g = _GraphBuilder(rng)
    fb = space.fixed_bits
    stem_out = g.clip(g.layer("stem", "images", layers[0][0], fb, True, first=True), 0.0, 6.0)
    x = g.layer("first_dw", stem_out, layers[1][0], fb, False)
    x = g.layer("first_pw", g.clip(x, 0.0, 6.0), layers[2][0], fb, False)
    first = layers[2][0]
    h = g.node("Add", [stem_out, x]) if layers[1][0].stride == 1 and first.in_channels == first.out_channels else x
    i = 3
    for slot in space.slots:
        if slot.position >= config.depths[slot.stage]:
            continue
        bits = policy.blocks[slot.index]
        (expand, _, _), (dw, _, _), (project, _, _) = layers[i:i + 3]
        i += 3
        y = g.layer(f"b{slot.index}_expand", h, expand, bits.pw_a_bits, True)
        y = g.layer(f"b{slot.index}_dw", g.clip(y, 0.0, 6.0), dw, bits.dw_a_bits, False)
        y = g.layer(f"b{slot.index}_project", g.clip(y, 0.0, 6.0), project, bits.pw_a_bits, False)
        h = g.node("Add", [h, y]) if slot.stride == 1 and slot.in_channels == slot.out_channels else y
    head, classifier = layers[i][0], layers[i + 1][0]
    y = g.clip(g.layer("head", h, head, fb, True), 0.0, 6.0)
    y = g.node("ReduceMean", [y, g.node("Constant", [], value=_axes_tensor())], keepdims=0)
    g.layer("classifier", y, classifier, fb, False)
    return g.model("logits", space.image_channels, space.input_resolution), g.grids, g.scales


def _axes_tensor():
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array([2, 3], np.int64))


def subnet_int8_onnx(space: SearchSpace, genes: np.ndarray, seed: int, exporter: bool = False) -> bytes:
    """A sub-net's integer graph at the target's bits: built op for op (`subnet_float_onnx`) and
    quantized by `quantize_int8`, or (`exporter`) a random-init super network's sub-net calibrated
    on random images and exported exactly as `ems-ray export` writes it (slow: the PyTorch
    exporter). Weights' values do not change the integer kernels' time."""
    if not exporter:
        import tempfile

        from ems_ray.quant._onnx_int8 import quantize_int8

        rng = np.random.default_rng([seed, *np.asarray(genes, dtype=np.int64).tolist()])
        config = Genome(space).to_config(np.asarray(genes, dtype=np.int16))
        float_bytes, grids, scales = subnet_float_onnx(space, config, rng)
        shape = (8, space.image_channels, space.input_resolution, space.input_resolution)
        calibration = [rng.normal(0, 1, shape).astype(np.float32) for _ in range(2)]
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(float_bytes)
            quantize_int8(src, dst, grids, scales, calibration, "images", deployed_weight_storage())
            return dst.read_bytes()
    import torch

    from ems_ray.quant import QuantPolicy, apply_policy, calibrate, int8_onnx_bytes
    from ems_ray.supernet import ElasticSuperNet

    fingerprint = space_fingerprint(space)
    if fingerprint not in _SUPERNETS:
        torch.manual_seed(seed)
        _SUPERNETS[fingerprint] = ElasticSuperNet(space)
    config = Genome(space).to_config(np.asarray(genes, dtype=np.int16))
    net = _SUPERNETS[fingerprint].extract(config).eval()
    q = apply_policy(net, QuantPolicy.from_subnet(config, space))
    g = torch.Generator().manual_seed(seed)
    shape = (8, space.image_channels, space.input_resolution, space.input_resolution)
    batches = [(torch.randn(shape, generator=g), torch.zeros(8, dtype=torch.long)) for _ in range(2)]
    calibrate(q, batches, 2)
    return int8_onnx_bytes(q, [b[0].numpy() for b in batches])


# ----- timing ------------------------------------------------------------------------------------
LAYER_KERNELS = ("QLinearConv", "QGemm", "ConvInteger", "MatMulInteger", "Conv", "FusedConv", "Gemm")


def _stats(times_ms: list[float], target: OnnxRuntimeTarget) -> dict:
    """`median_ms`: the statistic the target keeps (its median, 10th percentile or minimum; the key
    keeps the table's column name), with the 10th/90th percentiles and the median itself."""
    p10, median, p90 = (float(v) for v in np.percentile(times_ms, [10, 50, 90]))
    kept = {"median": median, "p10": p10, "min": float(np.min(times_ms))}[target.statistic]
    return {"median_ms": kept, "p10_ms": p10, "p90_ms": p90, "wall_median_ms": median}


def time_onnx(model: bytes, input_name: str, shape: tuple[int, ...], target: OnnxRuntimeTarget) -> dict:
    """Wall time of `session.run` (ms) over `target.repeats` runs after `target.warmup` (`_stats`)."""
    import time

    from ems_ray.quant import ort_session

    session = ort_session(model, target.threads, provider=target.require_provider())
    x = np.random.default_rng(0).standard_normal((target.batch, *shape)).astype(np.float32)
    for _ in range(target.warmup):
        session.run(None, {input_name: x})
    times = []
    for _ in range(target.repeats):
        t0 = time.perf_counter()
        session.run(None, {input_name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    return _stats(times, target)


def time_layer_kernel(model: bytes, input_name: str, shape: tuple[int, ...], target: OnnxRuntimeTarget) -> dict:
    """Time of the layer's own kernel (QLinearConv / QGemm) per run, from ONNX Runtime's profile.

    A layer model's wall time is mostly what every `session.run` costs (~15 µs here) plus the
    Q/DQ at its ends, which a network pays once, not per layer: summed over 20-30 layers that
    overhead swamps the kernels. The profile's per-node time is the kernel alone."""
    import json
    import tempfile

    from ems_ray.quant import ort_session

    x = np.random.default_rng(0).standard_normal((target.batch, *shape)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(model, target.threads, profile_dir=tmp, provider=target.require_provider())
        for _ in range(target.warmup + target.repeats):
            session.run(None, {input_name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
               and e.get("args", {}).get("op_name") in LAYER_KERNELS]
    per_run = []
    for run in runs[target.warmup:]:
        start, end = run["ts"], run["ts"] + run["dur"]
        per_run.append(sum(e["dur"] for e in kernels if start <= e["ts"] <= end) / 1e3)
    if not per_run or not any(per_run):
        raise MeasurementError("no layer kernel in the ONNX Runtime profile of a layer model")
    return _stats(per_run, target)


def measure_job(job: dict) -> dict:
    """Time one item (`{"layer": key}` or `{"subnet": genes, "space": dump}`) with `job["target"]`; the
    result names the host, so a build can refuse results from two kinds of machine. Pure: a Ray
    task runs this same function on the node that measures."""
    from ems_ray.space import SearchSpace as Space

    target = OnnxRuntimeTarget.model_validate(job["target"])
    if "layer" in job:
        layer, w, a = layer_from_key(job["layer"])
        timing = time_layer_kernel(layer_int8_onnx(layer, w, a, target.seed), INPUT_NAME, input_shape(layer), target)
    else:
        space = Space.model_validate(job["space"])
        shape = (space.image_channels, space.input_resolution, space.input_resolution)
        model = subnet_int8_onnx(space, np.asarray(job["subnet"]), target.seed, job.get("exporter", False))
        timing = time_onnx(model, "images", shape, target)
    return {**timing, "host": host_info(target)}


def local_runner(fn: Callable[[dict], dict], jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
    """Run the jobs one after another in this process (timing needs the machine to itself)."""
    for job in jobs:
        yield job, fn(job)


# ----- whole networks from their layers --------------------------------------------------------------
@dataclass(frozen=True)
class NetworkFit:
    """latency = constant_ms + scale * sum(layer medians) + per_layer_ms * layers, fitted on `points` nets."""

    constant_ms: float
    scale: float
    per_layer_ms: float
    points: int
    rms_rel_error: float  # on the calibration nets themselves

    def apply(self, layer_sum_ms: np.ndarray, n_layers: np.ndarray) -> np.ndarray:
        return self.constant_ms + self.scale * layer_sum_ms + self.per_layer_ms * n_layers

    def as_dict(self) -> dict:
        return asdict(self)


def fit_network(layer_sum_ms: np.ndarray, n_layers: np.ndarray, measured_ms: np.ndarray) -> NetworkFit:
    """Least squares of `NetworkFit` on measured whole networks (at least 4)."""
    x = np.stack([np.ones(len(measured_ms)), layer_sum_ms, n_layers], axis=1).astype(np.float64)
    y = np.asarray(measured_ms, dtype=np.float64)
    if len(y) < 4:
        raise MeasurementError(f"calibration: {len(y)} whole sub-nets measured, the fit needs at least 4")
    (c, s, o), *_ = np.linalg.lstsq(x, y, rcond=None)
    if not s > 0:  # layer sum and layer count are nearly collinear: noise can flip the scale; drop the count
        logger.warning("network fit: scale %.3g with a per-layer term; fitting constant + scale only", s)
        (c, s), *_ = np.linalg.lstsq(x[:, :2], y, rcond=None)
        o = 0.0
    if not s > 0:
        raise MeasurementError(f"calibration: the fit gives whole networks a scale of {s:.3g} on their layers' "
                               f"sum; the measurements are too noisy (more repeats, an idle machine)")
    fit = NetworkFit(float(c), float(s), float(o), len(y), 0.0)
    rel = (fit.apply(x[:, 1], x[:, 2]) - y) / y
    return NetworkFit(fit.constant_ms, fit.scale, fit.per_layer_ms, len(y), float(np.sqrt(np.mean(rel ** 2))))


def layer_counts(genome: Genome, genes: np.ndarray) -> np.ndarray:
    """Layers each sub-net runs: the five fixed ones and three per active block (`subnet_layers`)."""
    return 5 + 3 * genome.active(np.atleast_2d(genes)).sum(axis=1)


def calibration_genes(space: SearchSpace, target: OnnxRuntimeTarget) -> np.ndarray:
    """The whole sub-nets the fit is made on: spread over sizes, bits at the target's width."""
    genome = Genome(space)
    rng = np.random.default_rng([target.seed, 13, 1])
    return genome.canonical(genome.with_bits(genome.sample_spread(rng, target.calibration_subnets),
                                             target.frozen_bits))


# ----- the build ---------------------------------------------------------------------------------------
class PartialBuild:
    """What a build has measured so far, rewritten with its digest after every item."""

    def __init__(self, path: Path, header: dict):
        self.path, self.header = path, header
        self.layers: dict[str, dict] = {}
        self.subnets: dict[str, dict] = {}
        if path.is_file():
            stored = json.loads(read_verified(path, "partial latency table", MeasurementError,
                                              f"delete {path} to start the build again"))
            differs = [k for k in header if k != "host" and stored["header"].get(k) != header[k]]
            if differs:
                raise MeasurementError(f"{path}: a partial build with other {differs}; delete it (or "
                                       f"build the other table elsewhere) to start again")
            self.header["host"] = stored["header"].get("host")
            self.layers, self.subnets = stored["layers"], stored["subnets"]

    def record(self, kind: str, key: str, result: dict) -> None:
        host = result.pop("host")
        if self.header.get("host") is None:
            self.header["host"] = host
        elif host_mismatch(self.header["host"], host):
            raise MeasurementError(
                f"measured on two kinds of host: {', '.join(host_mismatch(self.header['host'], host))}; the "
                f"build's resources must name one node type (partial results kept in {self.path})")
        (self.layers if kind == "layer" else self.subnets)[key] = result
        write_artifact(self.path, json.dumps({"header": self.header, "layers": self.layers,
                                              "subnets": self.subnets}))


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial.json")


def build_measured_lut(space: SearchSpace, target: OnnxRuntimeTarget, out: str | Path,
                       runner: Runner | None = None, progress: bool = True, limit: int | None = None):
    """Measure (what is missing of) the table for `space` on `target` and save it at `out`.

    `limit` measures only the first `limit` layers (a table for a handful of layers: tests, a
    quick look); such a table is saved as partial and not loadable as a cost table.
    """
    from ems_ray.console import Progress

    from .lut import CostTable

    target.check_space(space)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    target_dump = target.model_dump(mode="json")
    measuring = {k: v for k, v in target_dump.items() if k not in ("resources", "accept_other_host")}
    partial = PartialBuild(partial_path(out), {"space_hash": space_fingerprint(space), "target": measuring})
    supported = set(target.precisions())
    keys = [layer_key(layer, w, a) for layer, pairs in enumerate_layers(space).items()
            for (w, a) in pairs if (w, a) in supported]
    keys = keys[:limit] if limit is not None else keys
    calib = calibration_genes(space, target) if limit is None else np.zeros((0, Genome(space).width), np.int16)
    calib_keys = [",".join(map(str, row.tolist())) for row in calib]
    jobs = ([{"kind": "layer", "layer": k, "target": target_dump} for k in keys if k not in partial.layers]
            + [{"kind": "subnet", "key": k, "subnet": row.tolist(), "space": space.model_dump(mode="json"),
                "target": target_dump} for k, row in zip(calib_keys, calib) if k not in partial.subnets])
    total = len(keys) + len(calib_keys)
    logger.info("latency table for '%s' on %s: %d layers + %d calibration sub-nets, %d to measure",
                space.name, target.provider_name, len(keys), len(calib_keys), len(jobs))
    with Progress(f"measure {space.name}", total, done=total - len(jobs), unit="models", bar=None if progress else False) as bar:
        for job, result in (runner or local_runner)(measure_job, jobs):
            partial.record(job["kind"], job.get("layer") or job["key"], result)
            bar.add()
    if limit is not None:
        return partial
    table = CostTable.from_measurements(space, target, partial.layers, partial.header["host"])
    layer_sum = table.score(calib)["latency_ms"]
    measured = np.array([partial.subnets[k]["median_ms"] for k in calib_keys])
    fit = fit_network(layer_sum, layer_counts(table.genome, calib), measured)
    logger.info("network fit on %d sub-nets: %.4f ms + %.3f x layers + %.4f ms/layer (rms error %.1f%%)",
                fit.points, fit.constant_ms, fit.scale, fit.per_layer_ms, 100 * fit.rms_rel_error)
    table = table.with_fit(fit, {"genes": calib.tolist(), "measured": [partial.subnets[k] for k in calib_keys]})
    table.save(out)
    remove_artifact(partial.path)
    return table


def subnet_jobs(space: SearchSpace, target: OnnxRuntimeTarget, genes: Iterable[np.ndarray]) -> list[dict]:
    """Jobs that measure whole sub-nets (validation)."""
    dump, space_dump = target.model_dump(mode="json"), space.model_dump(mode="json")
    return [{"kind": "subnet", "key": str(i), "subnet": np.asarray(row).tolist(), "space": space_dump,
             "target": dump} for i, row in enumerate(genes)]


def describe_layers(space: SearchSpace, genes: np.ndarray) -> list[str]:
    """One sub-net's layers as the table keys them (debugging a prediction)."""
    config = Genome(space).to_config(np.asarray(genes, dtype=np.int16))
    return [layer_key(layer, w, a) for layer, w, a in subnet_layers(space, config)]

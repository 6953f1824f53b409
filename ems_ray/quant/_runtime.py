"""Running an exported graph in ONNX Runtime (CPU): sessions, latency, and which kernels ran.

`executed_ops` reads ONNX Runtime's own profile (`SessionOptions.enable_profiling`): the kernels
that actually executed after the runtime's graph optimisations, with their times. That is what
says whether a quantized conv ran as an integer kernel (`QLinearConv`) or was turned back into
float; the graph file alone cannot.
"""
from __future__ import annotations

import functools
import json
import platform
import re
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ems_ray.errors import InputError

INTEGER_CONV_OPS = ("QLinearConv", "ConvInteger")


def ort_session(onnx_path: str | Path | bytes, num_threads: int | None = None, profile_dir: str | None = None,
                provider: str = "CPUExecutionProvider"):
    """A session, sequential, `num_threads` intra-op threads (None: ONNX Runtime's default), on
    `provider` (CPU unless a measured hardware target names another; CPU stays the fallback)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # its warnings about unused initializers say nothing a user acts on
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / "ort_profile")
    model = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
    providers = [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
    return ort.InferenceSession(model, options, providers=providers)


@functools.cache
def _cpuinfo(field: str) -> str | None:
    """The first `field` line of /proc/cpuinfo (read once per field and process), None off Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU feature flags of this host (Linux; empty elsewhere)."""
    return set((_cpuinfo("flags") or "").split())


WEIGHT_STORAGES = ("auto", "int8", "uint8")


def resolve_weight_storage(choice: str) -> tuple[str, str]:
    """(storage, why) of the integer weights: "int8" or "uint8" (the same codes plus 128).

    ONNX Runtime's u8 activation × s8 weight kernels on x86 without VNNI multiply pairs into a
    saturating 16-bit sum (`vpmaddubsw`): 255 × 127 × 2 overflows it, so 8-bit layers lose
    accuracy there (measured: twice the float QDQ graph's deviation from fake-quant on an AVX2
    EPYC). Its u8 × u8 kernels widen first and are exact. "auto" picks int8 where VNNI (or a
    non-x86 CPU) makes u8 × s8 exact, uint8 elsewhere.
    """
    if choice not in WEIGHT_STORAGES:
        raise InputError(f"weight_storage: '{choice}' not allowed; allowed values: {list(WEIGHT_STORAGES)}")
    if choice != "auto":
        return choice, "chosen"
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return "int8", f"{platform.machine()}: u8 x s8 kernels are exact"
    if cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "int8", "x86 with VNNI: u8 x s8 kernels are exact"
    return "uint8", "x86 without VNNI: u8 x s8 kernels saturate, u8 x u8 ones do not"


@dataclass(frozen=True)
class Latency:
    """Wall time of one `session.run` on a fixed random batch, over `repeats` runs after warm-up."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    batch: int
    threads: int | None
    repeats: int

    def as_dict(self) -> dict:
        return {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "batch": self.batch,
                "threads": self.threads, "repeats": self.repeats}


def measure_latency(onnx_path: str | Path, input_name: str, input_shape: tuple[int, ...], batch: int = 1,
                    threads: int | None = 1, repeats: int = 50, warmup: int = 10, session=None) -> Latency:
    """Median (and 10th/90th percentile) latency of the graph at `batch` on `threads` threads."""
    session = session or ort_session(onnx_path, threads)
    x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {input_name: x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, {input_name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    return Latency(float(median), float(p10), float(p90), batch, threads, repeats)


@dataclass(frozen=True)
class ExecutedOps:
    """Kernels one profiled run executed: how many of each op type, and their share of kernel time.

    `conv_kinds` splits the convolutions' time by kind ("depthwise": group > 1, or "dense"), which
    is what a latency breakdown needs.
    """

    counts: dict[str, int]
    time_share: dict[str, float]
    conv_kinds: dict[str, float]

    @property
    def integer_convs(self) -> int:
        return sum(self.counts.get(op, 0) for op in INTEGER_CONV_OPS)


def _depthwise_nodes(onnx_path: str | Path) -> set[str]:
    """Names of the graph's Conv nodes with one group per channel (group > 1 in these networks)."""
    import onnx

    return {node.name for node in onnx.load(str(onnx_path)).graph.node if node.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in node.attribute)}


def _conv_kind(event: dict, depthwise: set[str]) -> str | None:
    """"<op> depthwise|dense" for a convolution kernel event: by its weight's shape (C, 1, k, k)
    where the profile shows it (float kernels), else by the graph node it came from (an integer
    kernel is named `<node>_token_<n>` and its prepacked weight has no shape there)."""
    op = event["args"].get("op_name")
    if op not in ("QLinearConv", "Conv", "FusedConv", "ConvInteger", "NhwcFusedConv"):
        return None
    shapes = event["args"].get("input_type_shape", [])
    weight = next(iter(shapes[1].values()), []) if op != "QLinearConv" and len(shapes) > 1 else []
    if len(weight) == 4:
        is_depthwise = weight[1] == 1 and weight[0] > 1
    else:
        is_depthwise = re.sub(r"(_token_\d+)?_kernel_time$", "", event["name"]) in depthwise
    return f"{op} {'depthwise' if is_depthwise else 'dense'}"


def executed_ops(onnx_path: str | Path, input_name: str, input_shape: tuple[int, ...], batch: int = 1,
                 threads: int | None = 1, runs: int = 5) -> ExecutedOps:
    """Profile `runs` runs of the graph and count the kernels of one run (see `ExecutedOps`)."""
    x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(onnx_path, threads, profile_dir=tmp)
        for _ in range(runs):
            session.run(None, {input_name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    depthwise = _depthwise_nodes(onnx_path)
    counts = Counter(e["args"]["op_name"] for e in kernels)
    times: dict[str, float] = defaultdict(float)
    kinds: dict[str, float] = defaultdict(float)
    for e in kernels:
        times[e["args"]["op_name"]] += e["dur"]
        kind = _conv_kind(e, depthwise)
        if kind is not None:
            kinds[kind] += e["dur"]
    total = sum(times.values()) or 1.0
    return ExecutedOps(
        counts={op: n // runs for op, n in sorted(counts.items())},
        time_share={op: t / total for op, t in sorted(times.items(), key=lambda kv: -kv[1])},
        conv_kinds={k: t / total for k, t in sorted(kinds.items(), key=lambda kv: -kv[1])},
    )

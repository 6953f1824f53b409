"""Measuring a chosen sub-net on the test split: the slow part of the stage (one fine-tune each).

`measure_subnet` is plain Python (tests call it directly); `measure_all` runs a batch of them as
Ray tasks, one per sub-net, or in this process, and hands each result back as it finishes so the
stage can write it at once (a killed run keeps what was measured).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ems_ray.data import DataConfig
from ems_ray.quant.config import QuantRecipe
from ems_ray.space import SubnetConfig

from .config import FinalResources

logger = logging.getLogger(__name__)


def runtime_metrics(model, train, test, hardware: dict, export_path: Path | None) -> dict[str, float]:
    """The fine-tuned fake-quant model as ONNX Runtime runs it on a measured target: its integer
    graph (written to `export_path` with its digest), latency timed as the target's table was, and
    test accuracy of the ONNX model itself."""
    import itertools

    import numpy as np

    from ems_ray.artifacts import write_artifact
    from ems_ray.hardware.measured import time_onnx
    from ems_ray.hardware.targets import parse_target
    from ems_ray.quant import ExportedModel, int8_onnx_bytes
    from ems_ray.supernet import evaluate

    target = parse_target(hardware)
    model = model.cpu().eval()
    batches = [np.ascontiguousarray(images.numpy()) for images, _ in itertools.islice(train, 4)]
    onnx_bytes = int8_onnx_bytes(model, batches)
    if export_path is not None:
        write_artifact(export_path, onnx_bytes)
    space = model.space
    timing = time_onnx(onnx_bytes, "images", (space.image_channels, space.input_resolution, space.input_resolution),
                       target)
    accuracy, _ = evaluate(ExportedModel(Path(export_path or "model.onnx"), {}, target.threads, onnx_bytes), test)
    return {"runtime_latency_ms": timing["median_ms"], "runtime_latency_p90_ms": timing["p90_ms"],
            "onnx_test_accuracy": float(accuracy)}


def measure_subnet(supernet_path: Path, subnet: SubnetConfig, recipe: QuantRecipe, data: DataConfig, seed: int,
                   threads: int | None = None, gpu_ids: Sequence[int] = (), hardware: dict | None = None,
                   export_path: Path | None = None) -> dict[str, float]:
    """Extract `subnet`, quantize it by its own bits, calibrate and fine-tune on the train split
    (`recipe`), and evaluate float and quantized accuracy on the **test** split. `gpu_ids`: the
    GPUs this call may use (the Ray task passes the ones Ray assigned); none: the CPU. On a
    measured `hardware` target the model is also exported and run in ONNX Runtime (`runtime_metrics`)."""
    import torch

    from ems_ray.collect.worker import choose_device
    from ems_ray.data import build_splits, make_loader
    from ems_ray.quant import quantize_subnet
    from ems_ray.supernet.checkpoint import load_supernet

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    # an assigned GPU is used; none usable falls back to the CPU and says so
    device, note = choose_device("auto", list(gpu_ids))
    if note:
        logger.info(f"[final] {note}")
    supernet = load_supernet(Path(supernet_path)).to(device)
    splits = build_splits(data)
    train = make_loader(splits.train, data.batch_size, shuffle=True, seed=seed)
    test = make_loader(splits.test, data.eval_batch_size)
    result = quantize_subnet(supernet, subnet, recipe, train, test, seed=seed)
    runtime = {} if hardware is None else runtime_metrics(result.model, train, test, hardware, export_path)
    return {"fp_test_accuracy": float(result.fp_acc), "quant_test_accuracy": float(result.quant_acc),
            "finetune_seconds": float(result.finetune_seconds), "measure_seconds": time.perf_counter() - t0,
            "device": device, **runtime}


def measure_all(jobs: Iterable[tuple[str, dict]], resources: FinalResources, use_ray: bool,
                on_result: Callable[[str, dict], None]) -> None:
    """Run `measure_subnet(**kwargs)` for every (key, kwargs) and call `on_result(key, metrics)`.

    Under Ray each job is a task asking for `resources` (torch limited to as many threads), so
    sub-nets are measured in parallel up to the cluster's CPUs; Ray must already be initialised.
    """
    jobs = list(jobs)
    if not use_ray:
        for key, kwargs in jobs:
            on_result(key, measure_subnet(**kwargs))
        return
    import ray

    def measure_on_ray(**kwargs) -> dict[str, float]:
        return measure_subnet(**kwargs, gpu_ids=ray.get_gpu_ids())

    task = ray.remote(measure_on_ray).options(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus)
    pending = {task.remote(**kwargs, threads=resources.num_cpus): key for key, kwargs in jobs}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(done[0])
        on_result(key, ray.get(done[0]))

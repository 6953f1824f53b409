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


def measure_subnet(supernet_path: Path, subnet: SubnetConfig, recipe: QuantRecipe, data: DataConfig, seed: int,
                   threads: int | None = None, gpu_ids: Sequence[int] = ()) -> dict[str, float]:
    """Extract `subnet`, quantize it by its own bits, calibrate and fine-tune on the train split
    (`recipe`), and evaluate float and quantized accuracy on the **test** split. `gpu_ids`: the
    GPUs this call may use (the Ray task passes the ones Ray assigned); none: the CPU."""
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
    return {"fp_test_accuracy": float(result.fp_acc), "quant_test_accuracy": float(result.quant_acc),
            "finetune_seconds": float(result.finetune_seconds), "measure_seconds": time.perf_counter() - t0,
            "device": device}


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

"""The collection stage of a run: measure planned points into `<run_dir>/collect/<kind>/`.

Everything that can be checked is checked before work starts: the output folder is writable,
the super-network file exists and belongs to the run's search space, the data loads, existing
shards are readable and were collected with the same plan and measurement settings.

Takes the run's shared settings (`RunContext`: space, data, seed, Ray, cost table), its `collect`
section and the run's quantization recipe (`quant`, which `collect.quant_recipe` overrides).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ems_ray.artifacts import file_sha256
from ems_ray.console import Progress
from ems_ray.data import build_splits
from ems_ray.errors import InputError
from ems_ray.hardware import run_cost_table
from ems_ray.space import ENCODING_VERSION
from ems_ray.quant.config import QuantRecipe
from ems_ray.supernet.checkpoint import (is_quantization_aware, read_supernet_file, require_quantization_aware,
                                         supernet_from_file)

from .config import KINDS
from .plan import PlannedSamples, SamplingPlan
from .schema import to_table
from .shards import CollectError, ShardStore
from .worker import HARDWARE_COLUMNS, EvaluationWorker, WorkerSpec, choose_device

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.run_context import RunContext

    from .config import CollectConfig


@dataclass
class CollectSummary:
    kind: str
    folder: Path
    target_points: int
    total_points: int
    new_points: int
    seconds: float
    lost_batches: int = 0

    @property
    def points_per_min(self) -> float:
        return 60.0 * self.new_points / self.seconds if self.seconds > 0 else 0.0


def collect_folder(run: RunContext, kind: str) -> Path:
    return run.layout.collected(kind)


def run_collect_stage(run: RunContext, config: CollectConfig, kind: str, *, quant: QuantRecipe,
                      points: int | None = None, supernet_path: Path | None = None, use_ray: bool = True,
                      log: Callable[[str], None] | None = None,
                      on_shard: Callable[[Path, pa.Table], None] | None = None) -> CollectSummary:
    """Collect the first `points` (default `collect.<kind>_points`) of the run's plan for `kind`.

    Resumes: sample ids already in the folder are skipped. `on_shard(path, table)` is called after
    each shard is written. Returns counts and timing; read the points with `read_points`.
    """
    if kind not in KINDS:
        raise InputError(f"kind: '{kind}' not allowed; allowed values: {list(KINDS)}")
    cc = config
    target = cc.points(kind) if points is None else points
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise InputError(f"points: {target!r} not allowed; give a positive whole number of points to collect")
    space = run.search_space()
    store = ShardStore(collect_folder(run, kind))
    store.prepare()
    path = Path(supernet_path or run.layout.supernet)
    blob = read_supernet_file(path)  # missing / unreadable / damaged: SupernetFileError
    supernet = supernet_from_file(blob, path, space)  # trained for another space: SupernetFileError
    sha = file_sha256(path)
    splits = build_splits(run.data)  # missing data fails here, not in every actor
    val_images = None if cc.val_images is None or cc.val_images >= len(splits.val) else cc.val_images
    recipe = cc.quant_recipe or quant
    if kind == "quant":
        recipe = quant_recipe(recipe, cc.quant_mode, blob, path)
    spec = WorkerSpec(kind=kind, space=space, data=run.data, bn_batches=cc.bn_batches, val_images=val_images,
                      recipe=recipe, supernet_sha256=sha,
                      threads=cc.resources.torch_threads(), device=cc.device)
    plan = SamplingPlan(space, kind, run.seed, cc.policies_per_arch, cc.scheme2_fraction,
                        fixed_bits=run.hardware.frozen_bits)  # a target with one precision: only it is measured
    done = store.scan()  # corrupt shards fail here, named
    store.check_manifest({"plan": plan.describe(), "measurement": spec.measurement(), "supernet_sha256": sha,
                          "encoding_version": ENCODING_VERSION})
    planned = plan.take(target)
    todo = planned.select(~np.isin(planned.sample_id, np.fromiter(done, np.int64, len(done))))
    progress_sink, log = log, log or logger.info  # no sink given: a progress bar on a terminal
    log(f"[collect {kind}] {store.folder}: {target - len(todo)}/{target} points present, {len(todo)} to measure "
        f"(supernet {sha[:12]}, {f'Ray, {cc.backend}' if use_ray else 'in this process'})")
    progress = Progress(f"[collect {kind}]", target, done=target - len(todo), every_s=cc.progress_every_s,
                        log=progress_sink)
    t0 = time.monotonic()
    lost = 0
    if len(todo):
        batches = _batches(todo, run_cost_table(run).score(todo.genes), cc.points_per_shard)

        def write(columns: dict) -> None:
            table = to_table(columns)
            written = store.write(table)
            progress.add(table.num_rows if written else 0)
            if written and on_shard is not None:
                on_shard(written, table)

        state = supernet.state_dict()
        if use_ray:
            lost = _run_on_ray(run, cc, spec, state, batches, write, log)
        else:
            device, note = choose_device(spec.device, [])
            if note:
                log(f"[collect {kind}] {note}")
            worker = EvaluationWorker(spec, state, device)
            for batch in batches:
                write(worker(batch))
    progress.close()
    seconds = time.monotonic() - t0
    total = len(store.done & set(planned.sample_id.tolist()))
    if total < target:
        raise CollectError(f"only {total} of {target} points were collected into {store.folder}; re-run to resume")
    return CollectSummary(kind, store.folder, target, total, len(todo), seconds, lost)


def quant_recipe(recipe: QuantRecipe, mode: str, blob: dict, supernet_path: Path) -> QuantRecipe:
    """The recipe quantized points are measured with: without its fine-tune when the super network
    (`blob`, the verified contents of `supernet_path`) is quantization-aware (mode auto) or must be
    (mode direct: NotQuantizationAwareError otherwise)."""
    if mode == "finetune":
        return recipe
    if mode == "direct":
        require_quantization_aware(supernet_path, blob, "collect.quant_mode: direct")
    elif not is_quantization_aware(blob):
        return recipe
    return recipe.model_copy(update={"finetune_steps": 0})


def _batches(todo: PlannedSamples, costs: dict[str, np.ndarray], size: int) -> list[dict]:
    """Task inputs: planned columns plus the LUT's hardware cost (scored in one batched lookup)."""
    out = []
    for lo in range(0, len(todo), size):
        part = slice(lo, lo + size)
        out.append({"sample_id": todo.sample_id[part], "scheme": todo.scheme[part], "arch_id": todo.arch_id[part],
                    "genes": todo.genes[part], "seed": todo.seed[part],
                    **{c: np.asarray(costs[c][part]) for c in HARDWARE_COLUMNS}})
    return out


def _run_on_ray(run: RunContext, config: CollectConfig, spec: WorkerSpec, state: dict, batches: list[dict], write,
                log) -> int:
    """Measure `batches` on the configured Ray backend; returns how many batches were lost and re-run."""
    from ems_ray.ray_session import ray_session

    if config.backend == "ray_data":
        from .ray_dataset import DatasetCollector as Runner
    else:
        from .actor_pool import EvaluationActorPool as Runner
    with ray_session(run.ray):
        runner = Runner(spec, state, config.resources, log)
        runner.run(batches, write)
        return runner.lost_batches

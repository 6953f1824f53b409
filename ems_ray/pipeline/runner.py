"""`ems-ray pipeline`: every stage of a run, in order, in one Ray session, recorded in the manifest.

Checks that can fail cheaply (config, data, budgets) run before any stage, so a bad input never
costs a training run. A stage is skipped when the manifest says it finished with the same settings
and inputs, its outputs are unchanged and they read back and verify (a damaged one fails, named);
otherwise it is called, and resumes from its own state.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ems_ray.artifacts import json_digest
from ems_ray.errors import InputError
from ems_ray.run_layout import RunLayout

from .manifest import Manifest, path_digest
from .stages import STAGES, Stage, run_budgets

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.config import RunConfig

def preflight(cfg: RunConfig) -> None:
    """Fail before any work on missing data, no budget or an infeasible one (naming the cheapest
    cost the space allows)."""
    from ems_ray.data import build_splits
    from ems_ray.hardware import run_cost_table
    from ems_ray.search import check_feasible

    budgets = run_budgets(cfg)
    if not budgets:
        raise InputError("final.budgets: the pipeline needs at least one budget (e.g. [latency=0.5ms]); "
                         "or set search.budget")
    space = cfg.search_space()
    if cfg.hardware.measured and not (cfg.search.lut or RunLayout.of(cfg).lut.is_file()):
        logger.info("budgets are checked against the measured table once the lut stage has built it")
    else:
        table = run_cost_table(cfg.context(), save=False)  # nothing is written before the checks pass
        for budget in budgets:
            check_feasible(table, budget)
    if "sequential" in cfg.final.methods:
        cfg.final.sequential.check_space(space.bits.as_tuple())
    build_splits(cfg.data)  # DataNotFoundError names the folder and how to get the data


def stage_fingerprint(stage: Stage, cfg: RunConfig, stages: Sequence[Stage] = STAGES
                      ) -> tuple[str, dict[str, str | None]]:
    """(fingerprint, input digests): the stage's settings plus the current digests of its inputs."""
    run_dir = Path(cfg.run_dir)
    by_name = {s.name: s for s in stages}
    inputs = {p: path_digest(run_dir / p) for dep in stage.after for p in by_name[dep].outputs(cfg)}
    return json_digest({"settings": stage.settings(cfg), "inputs": inputs}), inputs


def select_stages(only: Iterable[str] | None, stages: Sequence[Stage] = STAGES) -> list[Stage]:
    if not only:
        return list(stages)
    only, names = list(only), [s.name for s in stages]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise InputError(f"stage(s) {unknown} not known; allowed values: {names}")
    return [s for s in stages if s.name in only]


def run_pipeline(cfg: RunConfig, only: Iterable[str] | None = None, force: bool = False, use_ray: bool = True,
                 log: Callable[[str], None] = logger.info, stages: Sequence[Stage] = STAGES) -> Manifest:
    """Run (or resume) `stages` (default: all, in order) of `cfg` into `cfg.run_dir`; returns the
    updated manifest.

    `only` limits the stages run (the rest are neither run nor checked); `force` re-runs selected
    stages even when current (each stage still reuses its own finished work: checkpoints, shards).
    """
    all_stages, stages = stages, select_stages(only, stages)
    preflight(cfg)
    run_dir = Path(cfg.run_dir)
    manifest = Manifest(run_dir, cfg.name)  # an unreadable manifest fails before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    RunLayout.of(cfg).config.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    t0 = time.perf_counter()
    session = contextlib.nullcontext()
    if use_ray:
        from ems_ray.ray_session import ray_session

        session = ray_session(cfg.ray)
    with session:
        for i, stage in enumerate(stages, 1):
            fingerprint, inputs = stage_fingerprint(stage, cfg, all_stages)
            head = f"[pipeline] {i}/{len(stages)} {stage.name}"
            if not force and manifest.is_current(stage.name, fingerprint):
                if stage.check is not None:
                    stage.check(cfg)  # the reader's named error for a damaged output; nothing is rewritten
                log(f"{head}: done earlier, inputs and settings unchanged, outputs verified: skipped")
                continue
            previous = manifest.stages.get(stage.name)
            resumed = " (resuming an unfinished attempt)" if previous and previous.status in ("running", "failed") else ""
            log(f"{head}: running{resumed}")
            manifest.start(stage.name, fingerprint, inputs)
            try:
                stage.run(cfg, use_ray)
            except BaseException as exc:  # KeyboardInterrupt too: the manifest says where it stopped
                manifest.fail(stage.name, exc)
                raise
            manifest.finish(stage.name, {p: path_digest(run_dir / p) for p in stage.outputs(cfg)})
            log(f"{head}: done in {manifest.stages[stage.name].seconds:.0f} s")
    log(f"[pipeline] {cfg.name}: {len(stages)} stages current in {run_dir} "
        f"({time.perf_counter() - t0:.0f} s this run); manifest {manifest.path}")
    return manifest

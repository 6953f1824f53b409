"""The Ray adapter of a measured table: `measure_job` as Ray tasks on the node type the target names.

A table is only valid where it was measured, so the tasks ask for the target's `resources` (a
custom resource that only the deploying node type has, e.g. `{"node_type:cpu-worker": 1}`, which
also bounds how many measure at once on one node), never the head's CPUs by default. Each task
uses `threads` CPUs so Ray does not pack more timings onto a node than it has cores; results
come back as they finish and every one names its host (`PartialBuild` refuses a mix).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .targets import OnnxRuntimeTarget

if TYPE_CHECKING:
    from ems_ray.run_context import RunContext


def ray_runner(run: RunContext, target: OnnxRuntimeTarget, max_in_flight: int = 64):
    """A `Runner` sending jobs to Ray inside the run's Ray session (joined or started as `run.ray` says)."""

    def run(fn: Callable[[dict], dict], jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
        import ray

        from ems_ray.ray_session import ray_session

        with ray_session(run.ray):
            task = ray.remote(fn).options(num_cpus=target.threads, resources=dict(target.resources),
                                          max_retries=1)
            pending, queue = {}, list(jobs)
            while queue or pending:
                while queue and len(pending) < max_in_flight:
                    job = queue.pop(0)
                    pending[task.remote(job)] = job
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)

    return run

"""The Ray adapter `collect.backend: actor_pool`: a pool of evaluation actors that the driver
feeds batch by batch (the default is Ray Data, `ray_dataset.py`; this pool stays as the fallback).

Why an own pool beside Ray Data `map_batches` (`ray_dataset.py`, `collect.backend: ray_data`):
the driver knows which sample ids are in flight, writes each finished batch as a shard the
moment it returns (so a dying node loses only its in-flight batch), re-queues exactly the
batches of dead actors and counts them (`lost_batches`), and starts all `max_actors` at once.
Both backends measure the same rows; docs/collection.md gives the figures they were chosen by.
The pool keeps one batch in flight per actor; results come back to the driver, which writes
them, so worker nodes need no shared storage.

Lifecycle: `run` creates up to `max_actors` actors, each given the super network's state dict
through the object store (one `ray.put`; every node fetches it once). Actors that cannot be
placed yet stay pending, which is the resource demand an autoscaler acts on. Work starts once
`min_actors` are ready (within `startup_timeout_s`); later actors join as they come up. A batch
whose actor or node dies goes back to the front of the queue; Ray restarts the actor (up to
`max_restarts`) where there is room, and it rejoins when ready. Every actor is killed at the end.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import ray
from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError, WorkerCrashedError

from .actor import EvaluationActor, last_line, short_node_id
from .config import ActorResources
from .shards import CollectError
from .worker import WorkerSpec

logger = logging.getLogger(__name__)

# Failures that lose a batch but say nothing about the batch itself: re-queue it.
LOST_BATCH_ERRORS = (RayActorError, NodeDiedError, ObjectLostError, WorkerCrashedError)


class EvaluationActorPool:
    """Runs batches on Ray actors; `on_result(columns)` is called on the driver for each batch."""

    def __init__(self, spec: WorkerSpec, state_dict: dict, resources: ActorResources,
                 log: Callable[[str], None] = logger.info):
        self.spec, self.resources, self.log = spec, resources, log
        self._state_ref = ray.put(state_dict)
        self._remote = ray.remote(EvaluationActor).options(
            num_cpus=resources.num_cpus, num_gpus=resources.num_gpus, max_restarts=resources.max_restarts,
            max_task_retries=0,
        )
        self.lost_batches = 0
        self.actors_seen: dict[str, dict] = {}

    def run(self, batches: list[dict], on_result: Callable[[dict], None]) -> None:
        res = self.resources
        pending = deque(batches)
        actors: dict[int, ray.actor.ActorHandle] = {}
        probes: dict[ray.ObjectRef, int] = {}
        inflight: dict[ray.ObjectRef, tuple[int, dict]] = {}
        idle: deque[int] = deque()
        replacements = res.max_actors  # fresh actors allowed after permanent deaths

        def spawn() -> None:
            key = len(actors)
            actors[key] = self._remote.remote(self.spec, self._state_ref)
            probes[actors[key].info.remote()] = key

        def submit(key: int, batch: dict) -> None:
            inflight[actors[key].run.remote(batch)] = (key, batch)

        for _ in range(min(res.max_actors, len(batches))):
            spawn()
        started = last_progress = time.monotonic()
        ready_count, gate_open = 0, False
        try:
            while pending or inflight:
                if gate_open:
                    while idle and pending:
                        submit(idle.popleft(), pending.popleft())
                waitable = list(inflight) + list(probes)
                if not waitable:
                    if replacements <= 0:
                        raise CollectError("every evaluation actor died and no replacement is left; see the "
                                           "actor errors above")
                    replacements -= 1
                    spawn()
                    continue
                done, _ = ray.wait(waitable, num_returns=1, timeout=1.0)
                if not done:
                    self._check_stall(gate_open, ready_count, started, last_progress, bool(inflight))
                    continue
                ref = done[0]
                if ref in probes:
                    key = probes.pop(ref)
                    try:
                        info = ray.get(ref)
                    except LOST_BATCH_ERRORS as exc:
                        why = last_line(exc)
                        self.log(f"[collect] actor {key} is gone ({exc.__class__.__name__}: {why}); "
                                 f"{'starting another' if replacements > 0 and pending else 'not replaced'}")
                        if replacements > 0 and pending:
                            replacements -= 1
                            spawn()
                        continue
                    if info["worker"] not in self.actors_seen:
                        self.actors_seen[info["worker"]] = info
                        node = short_node_id(info["node"])
                        self.log(f"[collect] actor {key} ready on node {node} ({info['device']})"
                                 + (f": {info['note']}" if info["note"] else ""))
                    ready_count += 1
                    gate_open = gate_open or ready_count >= min(res.min_actors, len(batches))
                    idle.append(key)
                    last_progress = time.monotonic()
                    continue
                key, batch = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except LOST_BATCH_ERRORS as exc:
                    self.lost_batches += 1
                    pending.appendleft(batch)
                    ids = batch["sample_id"]
                    self.log(f"[collect] batch {ids[0]}..{ids[-1]} lost with actor {key} "
                             f"({exc.__class__.__name__}); re-queued")
                    probes[actors[key].info.remote()] = key  # rejoins if Ray restarts it
                    continue
                except ray.exceptions.RayTaskError as exc:
                    ids = batch["sample_id"]
                    raise CollectError(f"measuring sample ids {ids[0]}..{ids[-1]} failed: {exc}") from None
                if pending:
                    submit(key, pending.popleft())  # keep the actor busy while the driver writes
                else:
                    idle.append(key)
                last_progress = time.monotonic()
                on_result(result)
        finally:
            for handle in actors.values():
                ray.kill(handle, no_restart=True)

    def _check_stall(self, gate_open: bool, ready: int, started: float, last_progress: float,
                     busy: bool) -> None:
        res, now = self.resources, time.monotonic()
        if not gate_open and now - started > res.startup_timeout_s:
            raise CollectError(
                f"only {ready} of min_actors={res.min_actors} evaluation actors could be placed within "
                f"{res.startup_timeout_s:.0f} s; each asks for num_cpus={res.num_cpus}, num_gpus={res.num_gpus}; "
                f"the cluster has {ray.cluster_resources()}. Lower collect.resources or add nodes"
            )
        if gate_open and not busy and now - last_progress > res.startup_timeout_s:
            raise CollectError(f"no evaluation actor has been available for {res.startup_timeout_s:.0f} s "
                               "(nodes lost?); re-run to resume")

"""The Ray Data adapter (`collect.backend: ray_data`, the default): the planned batches as a Ray
Dataset, measured by `map_batches` over an autoscaling actor pool.

Each planned batch becomes one block of the input dataset (`ray.data.from_arrow`, one table per
batch); `map_batches` runs `MeasureBatch`, a callable class holding one `EvaluationActor`, over
`ActorPoolStrategy(min_size=min_actors, max_size=max_actors)` with `num_cpus`/`num_gpus` per
actor from `collect.resources`. The super network's state dict goes to the object store once
(`ray.put`); each actor gets the reference through `fn_constructor_kwargs` and fetches it once.
The driver streams the output blocks (`iter_batches(batch_size=None)`: whole blocks, in the
order they finish) and hands each to the stage, which writes it as a shard at once: an
interruption loses only the blocks in flight. Ray Data restarts an actor that dies (up to
`max_restarts`) and retries the block it held (`max_task_retries=-1`); if the dataset fails
anyway, the run stops and a re-run measures the ids that are still missing.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import ray

from .actor import EvaluationActor, last_line, short_node_id
from .config import ActorResources
from .schema import to_table
from .shards import CollectError
from .worker import WorkerSpec

logger = logging.getLogger(__name__)


def planned_table(batch: dict) -> pa.Table:
    """One planned batch (columns of numpy arrays, genes (n, width)) as an Arrow table: one input block."""
    return pa.table({name: (list(values) if name == "genes" else values) for name, values in batch.items()})


def planned_columns(table: pa.Table) -> dict:
    """The inverse of `planned_table`: the columns `EvaluationWorker` takes."""
    batch = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    batch["genes"] = np.stack(batch["genes"]).astype(np.int16)
    return batch


class MeasureBatch:
    """The `map_batches` callable: planned rows (one block, as Arrow) → measured rows (Arrow)."""

    def __init__(self, spec: WorkerSpec, state_ref: ray.ObjectRef):
        self.actor = EvaluationActor(spec, ray.get(state_ref))

    def __call__(self, planned: pa.Table) -> pa.Table:
        batch = planned_columns(planned)
        try:
            return to_table(self.actor.run(batch))
        except Exception as exc:
            ids = batch["sample_id"]
            raise CollectError(f"measuring sample ids {ids[0]}..{ids[-1]} failed: "
                               f"{exc.__class__.__name__}: {exc}") from exc


class DatasetCollector:
    """Runs batches through Ray Data; `on_result(columns)` is called on the driver per finished block."""

    def __init__(self, spec: WorkerSpec, state_dict: dict, resources: ActorResources,
                 log: Callable[[str], None] = logger.info):
        self.spec, self.resources, self.log = spec, resources, log
        self._state_ref = ray.put(state_dict)
        self.lost_batches = 0  # Ray Data re-runs a lost block itself and does not say how many
        self.restarts = 0  # actors seen back in a new process
        self.actors_seen: dict[str, dict] = {}

    def dataset(self, batches: list[dict]) -> ray.data.Dataset:
        """The lazy pipeline: one input block per planned batch, measured on the actor pool."""
        res = self.resources
        planned = ray.data.from_arrow([planned_table(b) for b in batches])
        return planned.map_batches(
            MeasureBatch, fn_constructor_kwargs={"spec": self.spec, "state_ref": self._state_ref},
            batch_size=max(len(b["sample_id"]) for b in batches), batch_format="pyarrow", zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(min_size=min(res.min_actors, len(batches)),
                                               max_size=min(res.max_actors, len(batches)),
                                               max_tasks_in_flight_per_actor=2),
            num_cpus=res.num_cpus, num_gpus=res.num_gpus,
        )

    def run(self, batches: list[dict], on_result: Callable[[dict], None]) -> None:
        res = self.resources
        with _data_context(wait_for_min_actors_s=int(np.ceil(res.startup_timeout_s)), enable_progress_bars=False):
            ds = self.dataset(batches)
        blocks = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0))
        try:
            for block in blocks:
                self._note_actors(block)
                on_result(block.to_pydict())
        except ray.exceptions.GetTimeoutError:
            raise CollectError(
                f"fewer than min_actors={res.min_actors} evaluation actors could be placed within "
                f"{res.startup_timeout_s:.0f} s; each asks for num_cpus={res.num_cpus}, num_gpus={res.num_gpus}; "
                f"the cluster has {ray.cluster_resources()}. Lower collect.resources or add nodes") from None
        except Exception as exc:  # a measurement's CollectError arrives wrapped by Ray and Ray Data
            cause = _collect_error(exc)
            if cause is not None:
                raise cause from None
            if not isinstance(exc, ray.exceptions.RayError):
                raise
            raise CollectError(f"the Ray Data collection failed ({exc.__class__.__name__}: "
                               f"{last_line(exc)}); "
                               "the finished shards are kept: re-run to resume") from exc
        finally:
            blocks.close()  # stops the execution (and its actors) when the driver stops early

    def _note_actors(self, block: pa.Table) -> None:
        """Log each actor process the first time one of its blocks arrives (Ray Data starts them out
        of the driver's sight), and an actor that came back in a new process: Ray restarted it and
        re-ran the blocks it held."""
        for worker, node, device in set(zip(*(block.column(c).to_pylist() for c in ("worker", "node", "device")))):
            if worker in self.actors_seen:
                continue
            actor = worker.rsplit(":", 1)[0]
            before = [w for w in self.actors_seen if w.rsplit(":", 1)[0] == actor]
            self.actors_seen[worker] = {"node": node, "device": device}
            short = short_node_id(node)
            if before:
                self.restarts += 1
                self.log(f"[collect] actor {actor} restarted on node {short} as {worker} (was {before[-1]}); "
                         "Ray Data re-ran the blocks it held")
                continue
            note = ""
            if device == "cpu" and self.resources.num_gpus > 0 and self.spec.device != "cpu":
                note = (f": Ray assigned num_gpus={self.resources.num_gpus} but no CUDA device is usable there "
                        "(torch.cuda.is_available() is False): running on CPU")
            self.log(f"[collect] actor {worker} ready on node {short} ({device}){note}")


def _collect_error(exc: BaseException) -> CollectError | None:
    """The `CollectError` a measurement raised, if that is what `exc` wraps."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, CollectError):
            return CollectError(str(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def _data_context(**settings) -> Iterator[None]:
    """Set Ray Data options for the datasets created inside (each copies the context it is made in)."""
    ctx = ray.data.DataContext.get_current()
    saved = {k: getattr(ctx, k) for k in settings}
    for k, v in settings.items():
        setattr(ctx, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)

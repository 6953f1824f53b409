"""One `EvaluationWorker` inside a Ray actor: the process that both Ray backends run.

`actor_pool.EvaluationActorPool` wraps it with `ray.remote`; `ray_dataset.DatasetCollector`
holds one inside each Ray Data map actor. Either way the worker measures the same points with
the same seeds, so the backend never changes a row's accuracy.
"""
from __future__ import annotations

import logging
import os

import ray

from ems_ray.console import ensure_logging

from .worker import EvaluationWorker, WorkerSpec, choose_device

logger = logging.getLogger(__name__)


class EvaluationActor:
    """Picks the device Ray assigned, names itself (node id, actor id and pid), builds the worker."""

    def __init__(self, spec: WorkerSpec, state_dict: dict):
        ensure_logging()
        ctx = ray.get_runtime_context()
        gpu_ids = ray.get_gpu_ids()
        device, self.note = choose_device(spec.device, gpu_ids)
        if self.note:
            logger.info(f"[collect actor] {self.note}")  # lands in the actor's log and the driver's
        self.gpu_ids = list(gpu_ids)
        self.worker = EvaluationWorker(spec, state_dict, device, node=ctx.get_node_id(),
                                       worker=f"{ctx.get_actor_id()[:12]}:{os.getpid()}")

    def info(self) -> dict:
        return {"node": self.worker.node, "worker": self.worker.worker, "device": self.worker.device.type,
                "gpu_ids": self.gpu_ids, "note": self.note}

    def run(self, batch: dict) -> dict:
        return self.worker(batch)


def short_node_id(node: str) -> str:
    """A Ray node id short enough for a log line (first 8 and last 4 hex digits)."""
    return node if len(node) <= 16 else f"{node[:8]}…{node[-4:]}"


def last_line(exc: BaseException, limit: int = 300) -> str:
    """The last line of an error's text: where Ray's long wrapped tracebacks say what happened."""
    text = str(exc).strip()
    return text.splitlines()[-1][:limit] if text else ""

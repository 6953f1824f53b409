"""Ray Train adapter: runs `train_supernet` on N `TorchTrainer` workers (DDP, gloo or NCCL).

Only rank 0 writes checkpoints; `FailureConfig` restarts killed workers from the last one, and
re-running with the same run directory resumes the same Ray Train run. Rank 0 also mirrors each
checkpoint into the run directory's `checkpoints/` (the `--local` layout), so a run folder copied
to a fresh machine, without Ray's own state, still resumes instead of starting over.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .checkpoints import STATE_FILE, LocalSession, load_state, save_state
from .progressive import LoopInputs, train_supernet


class RayTrainSession:
    """`TrainSession` backed by `ray.train`'s context, checkpoints and reporting."""

    def __init__(self, mirror: Path | None = None):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.mirror = LocalSession(mirror) if mirror is not None else None

    def restore(self) -> dict | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            # every rank must start from the same state: fall back to the mirror on all of them
            return self.mirror.restore() if self.mirror is not None else None
        with checkpoint.as_directory() as d:
            return load_state(Path(d) / STATE_FILE)

    def report(self, metrics: dict, state: dict | None) -> None:
        import ray.train

        if self.mirror is not None and self.rank == 0:
            self.mirror.report(metrics, state)
        if state is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            save_state(state, Path(d))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def _worker_loop(config: dict) -> None:
    train_supernet(config["inputs"], RayTrainSession(config.get("mirror")))


def fit_on_ray(inputs: LoopInputs, storage: Path, name: str = "supernet", mirror: Path | None = None) -> dict:
    """Train on Ray; returns the final state (from the last checkpoint). `mirror`: see module doc."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = inputs.train
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"inputs": inputs, "mirror": mirror},
        scaling_config=ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})},
        ),
        run_config=RunConfig(
            name=name, storage_path=str(Path(storage).resolve()),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            # Ray Train's own per-report INFO lines ("Reporting training result ...") only with -v
            logging_config=LoggingConfig(log_level="INFO" if inputs.verbosity > 0 else "WARNING"),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train finished without a checkpoint (error: {result.error})")
    with result.checkpoint.as_directory() as d:
        return load_state(Path(d) / STATE_FILE)


__all__ = ["RayTrainSession", "fit_on_ray"]

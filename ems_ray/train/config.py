"""Configuration of progressive-shrinking super-network training."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from ems_ray.errors import InputError

if TYPE_CHECKING:  # numpy and the genome load when a phase samples, not when a config loads
    import numpy as np

    from ems_ray.space import Genome, SearchSpace


class PhaseConfig(BaseModel):
    """One progressive-shrinking phase: which dimensions are elastic, for how long, how fast.

    `kernels`/`depth_levels`/`width_fraction` bound the sub-nets sampled in this phase:
    `depth_levels` = how many of the largest depth choices each stage may take (0 = all);
    `width_fraction` = the widest fraction of each block's mid-channel choices (0 = only the widest).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    epochs: PositiveInt
    lr: float = Field(gt=0)
    warmup_epochs: float = Field(0.0, ge=0)
    subnets_per_step: PositiveInt = 1
    kernels: Literal["max", "all"] = "all"
    depth_levels: int = Field(0, ge=0)
    width_fraction: float = Field(1.0, ge=0, le=1)
    sort_channels: bool = Field(False, description="re-order mid channels by importance first")
    distill: bool = Field(True, description="distil from the trained full network (phase 0's result)")

    def lower_bounds(self, genome: Genome) -> np.ndarray:
        """Lowest allowed index of every gene column (choices are sorted ascending)."""
        import numpy as np

        from ems_ray.space.genome import KERNEL, MID

        counts = genome.choice_counts.astype(np.int64)
        low = np.zeros_like(counts)
        n_st = genome.n_stages
        if self.depth_levels:
            low[:n_st] = np.maximum(counts[:n_st] - self.depth_levels, 0)
        if self.kernels == "max":
            cols = genome.slot_columns(KERNEL)
            low[cols] = counts[cols] - 1
        cols = genome.slot_columns(MID)
        allowed = np.maximum(1, np.ceil(self.width_fraction * counts[cols]).astype(np.int64))
        low[cols] = counts[cols] - allowed
        # bit genes stay free: the super network runs at full precision and ignores them
        return low

    def sample(self, genome: Genome, rng: np.random.Generator, n: int) -> np.ndarray:
        """n sub-nets drawn uniformly within this phase's bounds."""
        import numpy as np

        low = self.lower_bounds(genome)
        span = genome.choice_counts - low
        return (low + np.floor(rng.random((n, genome.width)) * span)).astype(np.int16)


class EvalConfig(BaseModel):
    """Per-epoch validation: the largest, the smallest and a fixed set of random sub-nets."""

    model_config = ConfigDict(extra="forbid")

    random_subnets: int = Field(4, ge=0)
    bn_batches: PositiveInt = 8
    val_batches: int | None = Field(None, ge=1, description="limit validation batches (None: all)")


class SupernetTrainConfig(BaseModel):
    """Progressive shrinking (once-for-all) with knowledge distillation, on 1..N workers."""

    model_config = ConfigDict(extra="forbid")

    phases: list[PhaseConfig]
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    kd_ratio: float = Field(1.0, ge=0)
    steps_per_epoch: int | None = Field(None, ge=1, description="cap steps per epoch (quick runs)")
    channels_last: bool = True
    threads_per_worker: int | None = Field(None, ge=1)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    # Ray Train resources
    workers: PositiveInt = 1
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    max_failures: int = Field(3, ge=0)

    @field_validator("phases")
    @classmethod
    def _phases(cls, v: list[PhaseConfig]) -> list[PhaseConfig]:
        if not v:
            raise InputError("phases must not be empty")
        names = [p.name for p in v]
        if len(set(names)) != len(names):
            raise InputError(f"phase names must be unique, got {names}")
        if v[0].distill:
            raise InputError("phases[0] trains the teacher (the full network): set distill: false")
        return v

    def check_space(self, space: SearchSpace) -> None:
        """Every phase's `depth_levels` must be within the space's depth choices: 0 (all) up to the
        most choices any stage has; more would silently mean "all"."""
        most = max(len(stage.depth_choices) for stage in space.stages)
        for i, phase in enumerate(self.phases):
            if phase.depth_levels > most:
                raise InputError(
                    f"phases.{i}.depth_levels: {phase.depth_levels} ('{phase.name}') is beyond the depth choices of "
                    f"search space '{space.name}' (at most {most} per stage: "
                    f"{[stage.depth_choices for stage in space.stages]}); allowed values: 0 (all) to {most}")

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def locate(self, global_epoch: int) -> tuple[int, int]:
        """(phase index, epoch within phase) of a global epoch counter."""
        for i, p in enumerate(self.phases):
            if global_epoch < p.epochs:
                return i, global_epoch
            global_epoch -= p.epochs
        raise IndexError("epoch beyond the schedule")


def cosine_lr(phase: PhaseConfig, progress_epochs: float) -> float:
    """Linear warm-up then cosine decay to zero within a phase (progress in epochs)."""
    if progress_epochs < phase.warmup_epochs:
        return phase.lr * (progress_epochs + 1e-3) / phase.warmup_epochs
    span = max(phase.epochs - phase.warmup_epochs, 1e-9)
    t = (progress_epochs - phase.warmup_epochs) / span
    return 0.5 * phase.lr * (1 + math.cos(math.pi * min(t, 1.0)))

"""Configuration of progressive-shrinking super-network training."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from ems_ray.errors import InputError

if TYPE_CHECKING:  # numpy and the genome load when a phase samples, not when a config loads
    import numpy as np

    from ems_ray.space import Genome, SearchSpace


class PhaseConfig(BaseModel):
    """One progressive-shrinking phase: which dimensions are elastic, for how long, how fast.

    `kernels`/`depth_levels`/`width_fraction` bound the sub-nets sampled in this phase:
    `depth_levels` = how many of the largest depth choices each stage may take (0 = all);
    `width_fraction` = the widest fraction of each block's mid-channel choices (0 = only the widest).
    `quantize` makes it a quantization-aware phase: each sampled sub-net also draws a bit policy
    (its bit genes) and runs fake-quantized at it, except the first `float_subnets` of each step,
    which run in float so that full-precision sub-nets keep their accuracy.
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
    quantize: bool = Field(False, description="sample bit policies and train the sub-nets fake-quantized")
    float_subnets: int = Field(0, ge=0, description="of subnets_per_step, how many run in float (quantize only)")

    @model_validator(mode="after")
    def _float_share(self) -> PhaseConfig:
        if self.float_subnets and not self.quantize:
            raise InputError(f"phase '{self.name}': float_subnets: {self.float_subnets} needs quantize: true "
                             "(without it every sub-net runs in float)")
        if self.quantize and self.float_subnets >= self.subnets_per_step:
            raise InputError(f"phase '{self.name}': float_subnets: {self.float_subnets} leaves no quantized "
                             f"sub-net; allowed values: 0..{self.subnets_per_step - 1} (subnets_per_step - 1)")
        return self

    def quantized_mask(self) -> list[bool]:
        """Which of a step's `subnets_per_step` sub-nets run fake-quantized."""
        return [self.quantize and i >= self.float_subnets for i in range(self.subnets_per_step)]

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
        # bit genes stay free: float sub-nets ignore them, a `quantize` phase runs at them
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
    continue_from: str | None = Field(
        None, description="a trained super-network file to continue: its phases must be the leading "
                          "phases of `phases` (same names); training starts with the first one it lacks")
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

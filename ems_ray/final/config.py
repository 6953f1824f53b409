"""Configuration of the final-model stage (the `final:` section of a run config).

    final:
      budgets: [latency=0.5ms, bitops=2G]
      methods: [ems, fixed8, sequential, no-transfer]
      sequential: {reference_bits: 6, arch_budget_factor: 1.5}
      recipe: null            # the run's `quant` section
      seeds: 3                # fine-tunes (seeds) per chosen sub-net: mean ± sd
      resources: {num_cpus: 1}
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from ems_ray.errors import InputError
from ems_ray.quant.config import QuantRecipe
from ems_ray.search.config import Budget

from .methods import METHODS

Method = Literal[METHODS]  # type: ignore[valid-type] - the registry's names, validated by pydantic
FIXED_BITS = 8


class SequentialConfig(BaseModel):
    """The sequential baseline (architecture, then pruning, then bits; see docs/final.md).

    Steps 1 and 2 cannot see bits, so they budget the network as if it ran at a uniform
    `reference_bits`; step 1 may exceed that budget by `arch_budget_factor` because pruning follows.
    """

    model_config = ConfigDict(extra="forbid")

    reference_bits: PositiveInt = Field(6, description="uniform precision the bit-blind steps budget at")
    arch_budget_factor: float = Field(1.5, ge=1.0, description="budget relaxation of the architecture step")
    prune_budget_factor: float = Field(1.0, ge=1.0, description="budget relaxation of the pruning step")

    def check_space(self, bit_choices: tuple[list[int], ...]) -> None:
        """`reference_bits` must be a choice of every bit field of the space."""
        allowed = sorted(set.intersection(*(set(c) for c in bit_choices)))
        if self.reference_bits not in allowed:
            raise InputError(f"final.sequential.reference_bits: {self.reference_bits} not allowed; "
                             f"allowed values: {allowed}")


class FinalResources(BaseModel):
    """Ray resources of one measurement task (a fine-tune); torch uses `num_cpus` threads."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: PositiveInt = 1
    num_gpus: float = Field(0, ge=0)


class FinalConfig(BaseModel):
    """Which budgets and methods the final stage measures, and how."""

    model_config = ConfigDict(extra="forbid")

    budgets: list[str] = Field(default_factory=list, description="e.g. latency=0.5ms; one result per budget")
    methods: list[Method] = Field(default_factory=lambda: list(METHODS))
    sequential: SequentialConfig = Field(default_factory=SequentialConfig)
    recipe: QuantRecipe | None = Field(None, description="None: the run's `quant` section")
    seeds: PositiveInt = Field(3, description="fine-tune and measure each chosen sub-net this many times (seeds "
                               "seed, seed + 1, ...); the results are their mean ± sd")
    resources: FinalResources = Field(default_factory=FinalResources)

    @field_validator("budgets")
    @classmethod
    def _budgets_parse(cls, v: list[str]) -> list[str]:
        for i, text in enumerate(v):
            try:
                Budget.parse(text)
            except ValueError as exc:
                raise InputError(f"budgets[{i}] '{text}': {exc}") from None
        if len({Budget.parse(t).slug() for t in v}) != len(v):
            raise InputError(f"budgets: the same budget is given twice in {v}")
        return v

    @field_validator("methods")
    @classmethod
    def _methods_unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise InputError(f"methods: duplicates in {v}; allowed values: {list(METHODS)}")
        return v

    def parsed_budgets(self) -> list[Budget]:
        return [Budget.parse(t) for t in self.budgets]

    def measure_seeds(self, seed: int) -> list[int]:
        """The fine-tune seeds of every chosen sub-net; the run's seed first (one seed: the single measurement)."""
        return [seed + k for k in range(self.seeds)]

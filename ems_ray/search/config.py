"""Configuration of the hardware-aware search (the `search:` section of a run config) and budgets.

A budget caps one or more LUT costs; it is written `latency=8.5ms`, `energy=12mJ`, `bitops=20G`,
or several joined by commas (`latency=8.5ms,energy=12mJ`). A bare number is in the LUT's own
unit (ms, mJ, BitOps), so `bitops=5e9` is `bitops=5G`; limits must be positive and finite.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from ems_ray.errors import InputError

Algorithm = Literal["evolution", "tpe", "nsga2", "random"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)

# budget key -> (LUT score key, unit it is written and shown in, scale from that unit to the score's)
BUDGET_UNITS = {
    "latency": ("latency_ms", "ms", 1.0),
    "energy": ("energy_mj", "mJ", 1.0),
    "bitops": ("bitops", "G", 1e9),
}
# unit suffixes `parse` reads, per budget key, with their scale to the LUT's unit (lower case)
_SUFFIXES = {
    "latency": {"ms": 1.0},
    "energy": {"mj": 1.0},
    "bitops": {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12},
}
# the unit a bare number is in: the LUT's own (ms, mJ, BitOps), the unit the limit is applied in
BARE_UNITS = {"latency": "ms", "energy": "mJ", "bitops": "BitOps"}
BUDGET_RULE = ("a number with a unit suffix (latency=8.5ms, energy=12mJ, bitops=20G; bitops also K, M, T) "
               "or a bare number in the LUT's own unit (milliseconds, millijoules, BitOps: bitops=5e9 is 5G)")
_ITEM = re.compile(r"^\s*(\w+)\s*=\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def _short(value: float) -> str:
    """The shortest text that reads back as `value` (`8.5`, `20`, `1.5e-05`)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


class Budget(BaseModel):
    """Upper bounds on a sub-net's LUT costs; `None` leaves a cost free. At least one is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    energy_mj: float | None = Field(None, gt=0, allow_inf_nan=False)
    bitops: float | None = Field(None, gt=0, allow_inf_nan=False, description="BitOps (not giga)")

    @model_validator(mode="after")
    def _not_empty(self) -> Budget:
        if not self.limits():
            raise InputError("a budget needs at least one of latency, energy, bitops")
        return self

    @classmethod
    def parse(cls, text: str) -> Budget:
        """`latency=8.5ms`, `energy=12mJ`, `bitops=20G`, or several joined by commas; see `BUDGET_RULE`."""
        values: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in str(text).split(","))):
            m = _ITEM.match(item)
            if not m or m.group(1).lower() not in BUDGET_UNITS:
                raise InputError(f"budget: cannot read '{item}'; write latency=8.5ms, energy=12mJ or bitops=20G")
            key, number, unit_given = m.group(1).lower(), m.group(2), m.group(3)
            score_key, unit, _ = BUDGET_UNITS[key]
            scale = _SUFFIXES[key].get(unit_given.lower()) if unit_given else 1.0
            if scale is None:
                allowed = ", ".join(sorted({u for u in _SUFFIXES[key]}))
                raise InputError(f"budget: {key} is given in {unit}, not '{unit_given}' (e.g. {key}=10{unit}; "
                                 f"suffixes read: {allowed}; a bare number is in {BARE_UNITS[key]})")
            if score_key in values:
                raise InputError(f"budget: {key} given twice")
            value = float(number) * scale
            if not math.isfinite(value) or value <= 0:
                raise InputError(f"budget: {key}={number}{unit_given} must be a positive finite number "
                                 f"(e.g. {key}=10{unit})")
            values[score_key] = value
        if not values:
            raise InputError("budget: empty; write latency=8.5ms, energy=12mJ or bitops=20G")
        return cls(**values)

    def limits(self) -> dict[str, float]:
        """LUT score key -> upper bound, for the bounded costs only."""
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def _bounds(self) -> list[tuple[str, str, str]]:
        """(key, value in its unit, unit) of every bounded cost, in `BUDGET_UNITS` order."""
        return [(key, _short(getattr(self, score_key) / scale), unit)
                for key, (score_key, unit, scale) in BUDGET_UNITS.items() if getattr(self, score_key) is not None]

    def describe(self) -> str:
        """The budget as `parse` reads it, e.g. `latency=8.5ms,bitops=20G`."""
        return ",".join(f"{key}={value}{unit}" for key, value, unit in self._bounds())

    def applied(self) -> str:
        """The limits as the search applies them: `latency ≤ 8.5 ms, bitops ≤ 20 GBitOps`."""
        return ", ".join(f"{key} ≤ {value} {'GBitOps' if key == 'bitops' else unit}"
                         for key, value, unit in self._bounds())

    def slug(self) -> str:
        """A folder name for this budget, one per distinct budget: `latency-8.5ms_bitops-20G`."""
        return self.describe().replace("=", "-").replace(",", "_")


class EvolutionConfig(BaseModel):
    """The paper's evolution (section 4): a population of `population` scored candidates; the top
    `parents` breed `mutations` children by mutation and `crossovers` by crossover per generation.

    `generations` counts scored generations, the random initial population included, so the
    default scores 500 x 100 = 50,000 candidates (the paper's budget). Candidates that break the
    budget (and, with `distinct`, repeats of a known network) are rejected before scoring and
    resampled, at most `max_resample_rounds` batched rounds.
    """

    model_config = ConfigDict(extra="forbid")

    population: PositiveInt = 100
    parents: PositiveInt = 25
    mutations: int = Field(50, ge=0)
    crossovers: int = Field(50, ge=0)
    mutation_prob: float = Field(0.1, gt=0, le=1)
    generations: PositiveInt = 500
    max_resample_rounds: PositiveInt = 200
    distinct: bool = Field(True, description="the population keeps distinct networks and proposals repeat none "
                                             "(by canonical genes); False: APQ's evolution, duplicates allowed")

    @model_validator(mode="after")
    def _sizes(self) -> EvolutionConfig:
        if self.parents > self.population:
            raise InputError(f"parents ({self.parents}) must not exceed population ({self.population})")
        if self.mutations + self.crossovers < 1:
            raise InputError("mutations + crossovers must be at least 1")
        return self

    @property
    def children(self) -> int:
        return self.mutations + self.crossovers


class CompareConfig(BaseModel):
    """`ems-ray compare-searchers`: every algorithm in `algorithms` scores exactly `candidates`.

    Optuna and random search take `candidates` as their trial count. The evolution scores its
    initial `population`, then `population` children per generation (half by mutation, half by
    crossover, the paper's 50/50 split), so `generations = candidates / population` and
    `candidates` must be a multiple of `population`. A comparison budget is small next to the
    paper's 50,000, so the defaults keep the paper's population and parents (100, 25) and trade
    generations: 1,000 candidates are 10 generations."""

    model_config = ConfigDict(extra="forbid")

    algorithms: list[Algorithm] = Field(default_factory=lambda: list(ALGORITHMS), min_length=1)
    candidates: PositiveInt = Field(1000, description="scored candidates per algorithm")
    population: PositiveInt = Field(100, description="evolution: population and children per generation")
    parents: PositiveInt = Field(25, description="evolution: parents per generation")

    @model_validator(mode="after")
    def _sizes(self) -> CompareConfig:
        if len(set(self.algorithms)) != len(self.algorithms):
            raise InputError(f"algorithms: listed twice in {self.algorithms}")
        if self.parents > self.population:
            raise InputError(f"parents ({self.parents}) must not exceed population ({self.population})")
        if self.population < 2:
            raise InputError("population must be at least 2 (one child by mutation, one by crossover)")
        if self.candidates % self.population:
            low = self.candidates // self.population * self.population
            hint = f"{low} or {low + self.population}" if low else str(self.population)
            raise InputError(f"candidates ({self.candidates}) must be a multiple of population ({self.population}) "
                             f"so the evolution scores exactly that many; use candidates {hint}")
        return self

    def evolution(self, base: EvolutionConfig) -> EvolutionConfig:
        """The evolution that scores exactly `candidates`; mutation probability, resampling and `distinct` from `base`."""
        half = self.population // 2
        return EvolutionConfig(population=self.population, parents=self.parents, mutations=half,
                               crossovers=self.population - half, generations=self.candidates // self.population,
                               mutation_prob=base.mutation_prob, max_resample_rounds=base.max_resample_rounds,
                               distinct=base.distinct)


ACCURACY = "accuracy"
OBJECTIVES = (ACCURACY, "latency_ms", "energy_mj", "bitops")  # what `--pareto` accepts
PARETO_ALGORITHMS = ("evolution", "nsga2")


class ObjectivesError(InputError):
    """A `--pareto` / `search.pareto.objectives` list that is not two or three known objectives with accuracy."""


@dataclass(frozen=True)
class Objectives:
    """What a Pareto front trades: accuracy (maximised) and one or two LUT costs (minimised)."""

    names: tuple[str, ...]  # accuracy first, then the costs in the order given

    @classmethod
    def parse(cls, value: str | Iterable[str]) -> Objectives:
        """`accuracy,latency_ms[,energy_mj]` (text or a list): two or three distinct values of
        `OBJECTIVES`, accuracy one of them; `ObjectivesError` naming the allowed values otherwise."""
        items = [p.strip() for p in (value.split(",") if isinstance(value, str) else value)]
        items = [p for p in items if p]
        allowed = ", ".join(OBJECTIVES)
        unknown = [p for p in items if p not in OBJECTIVES]
        if unknown:
            raise ObjectivesError(f"pareto objectives: {', '.join(repr(p) for p in unknown)} not allowed; "
                                  f"allowed values: {allowed}")
        if len(set(items)) != len(items):
            raise ObjectivesError(f"pareto objectives: '{','.join(items)}' names one twice; allowed values: {allowed}")
        if ACCURACY not in items or not 2 <= len(items) <= 3:
            raise ObjectivesError(f"pareto objectives: give accuracy and one or two costs (e.g. accuracy,latency_ms), "
                                  f"not '{','.join(items)}'; allowed values: {allowed}")
        return cls((ACCURACY, *[p for p in items if p != ACCURACY]))

    @property
    def costs(self) -> tuple[str, ...]:
        return self.names[1:]

    def describe(self) -> str:
        """As `parse` reads it: `accuracy,latency_ms`."""
        return ",".join(self.names)

    def slug(self) -> str:
        """A folder name: `accuracy-latency_ms-energy_mj`."""
        return "-".join(self.names)


class ParetoConfig(BaseModel):
    """`ems-ray search --pareto ...` and the pipeline's Pareto front (`search.pareto`): off unless
    `objectives` is set. The front's evolution is `ParetoEvolution` (NSGA-II's selection); it
    spreads its population along the whole front, so it keeps a larger one than the single-budget
    search (300 and 50 parents; measured in docs/BENCHMARKS.md, *Pareto fronts*). Optuna NSGA-II
    (`search.algorithm: nsga2`) scores `search.num_samples` candidates, in generations of
    `evolution.population`."""

    model_config = ConfigDict(extra="forbid")

    objectives: list[str] | None = Field(None, description="two or three of accuracy, latency_ms, energy_mj, "
                                                           "bitops, accuracy among them; None: no front")
    budget: str | None = Field(None, description="hard limits of the front, e.g. latency=1ms (the CLI's --budget "
                                                 "overrides); None: the whole front")
    evolution: EvolutionConfig = Field(default_factory=lambda: EvolutionConfig(population=300, parents=50))

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else list(Objectives.parse(v).names)

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: str | None) -> str | None:
        if v is not None:
            Budget.parse(v)
        return v


class MLflowConfig(BaseModel):
    """Where Tune's `MLflowLoggerCallback` logs each trial (a run per batch: its config, metrics)."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = Field(None, description="e.g. file:///path/mlruns or http://host:5000; None: "
                                                        "MLflow's default (MLFLOW_TRACKING_URI or ./mlruns)")
    experiment: str = Field("ems-ray-search", min_length=1, description="MLflow experiment name")


class TrackingConfig(BaseModel):
    """Optional experiment tracking of the searches that run on Tune (`compare-searchers`,
    `search --mode tune`); off unless a tracker is set. Needs the `mlflow` extra."""

    model_config = ConfigDict(extra="forbid")

    mlflow: MLflowConfig | None = None


class SearchConfig(BaseModel):
    """How `ems-ray search` runs: which algorithm, in-process (`local`) or as a Ray Tune run."""

    model_config = ConfigDict(extra="forbid")

    algorithm: Algorithm = "evolution"
    mode: Literal["local", "tune"] = Field("local", description="local: batched in-process driver "
                                                                 "(evolution, random); Optuna always runs on Tune")
    budget: str | None = Field(None, description="default budget, e.g. latency=8.5ms (the CLI may override)")
    predictor: Literal["quant", "fp", "auto"] = Field("auto", description="auto: quant if trained, else fp")
    lut: str | None = Field(None, description="cost-table Parquet; None builds it from the space")
    evolution: EvolutionConfig = Field(default_factory=EvolutionConfig)
    num_samples: PositiveInt = Field(1000, description="scored candidates of the Optuna and random searchers")
    batch: PositiveInt | None = Field(None, description="candidates per Tune trial; None: 1000 for the evolution (whole "
                                                        "generations, 10 of 100) and random search, 100 for TPE "
                                                        "(NSGA-II: one generation)")
    max_concurrent: PositiveInt = Field(1, description="Tune trials in flight: a score takes microseconds, and with "
                                                       "more than one the evolution's generation barrier costs an "
                                                       "actor restart per generation (BENCHMARKS.md)")
    compare: CompareConfig = Field(default_factory=CompareConfig)
    pareto: ParetoConfig = Field(default_factory=ParetoConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _budget_parses(self) -> SearchConfig:
        if self.budget is not None:
            Budget.parse(self.budget)
        return self

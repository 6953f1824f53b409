"""Search over a subset of gene columns, the others frozen at a base row (the baselines' searches).

The sequential baseline (architecture, then pruning, then bits) and the fixed-precision baseline
search the same space as the joint search with some decisions already taken. Rather than copy the
evolution, `RestrictedGenome` wraps a `Genome` and writes the frozen columns from `base` after
every sample/sample_spread/mutate/crossover. Every searcher proposes rows only through the genome
it is given, so any of them (`Evolution`, `RandomSearch`, their Tune searchers) searches the
restricted space unchanged, and the budget test (`feasible`) always sees the rows that will be
scored:

    rg = RestrictedGenome(Genome(space), base=genome.largest(bits=8), free=("depth", "kernel", "mid"))
    result = run_restricted_evolution(scorer, rg, budget, EvolutionConfig(), seed=0)

When depth is free, `base` should be a full row (not `Genome.canonical`, which zeroes inactive
slots): a slot that a deeper child switches on takes its frozen genes from `base`.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ems_ray.errors import InputError
from ems_ray.space import Genome
from ems_ray.space.genome import DW_A, DW_W, KERNEL, MID, PW_A, PW_W

from ._evolution import Evolution
from ._local import SearchResult, drive
from ._scoring import COST_KEYS, CandidateScorer, InfeasibleBudgetError, fits, within
from .config import Budget, EvolutionConfig

COLUMN_GROUPS = ("depth", "kernel", "mid", "bits")


def column_groups(genome: Genome) -> dict[str, np.ndarray]:
    """Gene columns of each decision: `depth` (per stage), `kernel`, `mid` (channels), `bits` (all four)."""
    return {
        "depth": np.arange(genome.n_stages),
        "kernel": genome.slot_columns(KERNEL),
        "mid": genome.slot_columns(MID),
        "bits": np.sort(np.concatenate([genome.slot_columns(g) for g in (PW_W, PW_A, DW_W, DW_A)])),
    }


def columns_of(genome: Genome, groups: Iterable[str]) -> np.ndarray:
    """Sorted gene columns of the named groups."""
    table = column_groups(genome)
    groups = list(groups)
    for name in groups:
        if name not in table:
            raise InputError(f"column group: '{name}' not allowed; allowed values: {list(COLUMN_GROUPS)}")
    return np.sort(np.concatenate([table[n] for n in groups])) if groups else np.zeros(0, dtype=np.intp)


class RestrictedGenome:
    """A `Genome` whose columns outside `free` (group names) always equal `base`'s.

    Offers what `Evolution` calls (`width`, `sample`, `mutate`, `crossover`) plus `freeze`; any
    other attribute (`to_config`, `canonical`, `active`, ...) is the wrapped genome's.
    """

    def __init__(self, genome: Genome, base: np.ndarray, free: Iterable[str]):
        self.genome = genome
        self.base = np.asarray(base, dtype=np.int16).reshape(-1)
        if self.base.shape != (genome.width,):
            raise InputError(f"base: expected {genome.width} genes, got {self.base.shape}")
        self.free_groups = tuple(free)
        self.free = columns_of(genome, self.free_groups)
        self.frozen = np.setdiff1d(np.arange(genome.width), self.free)

    def __getattr__(self, name: str):
        return getattr(self.genome, name)

    def freeze(self, genes: np.ndarray) -> np.ndarray:
        """Copy of `genes` with the frozen columns set from `base`."""
        genes = np.array(np.atleast_2d(genes), dtype=np.int16, copy=True)
        genes[:, self.frozen] = self.base[self.frozen]
        return genes

    def sample(self, rng: np.random.Generator, n: int, fixed_bits: int | None = None) -> np.ndarray:
        return self.freeze(self.genome.sample(rng, n, fixed_bits))

    def mutate(self, genes: np.ndarray, rng: np.random.Generator, prob: float = 0.1) -> np.ndarray:
        return self.freeze(self.genome.mutate(genes, rng, prob))

    def crossover(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.freeze(self.genome.crossover(a, b, rng))

    def sample_spread(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.freeze(self.genome.sample_spread(rng, n))

    def cheapest(self, table, budget: Budget) -> np.ndarray:
        """The row of the restricted space with the smallest sum of cost/limit over `budget`'s limits.

        Exact for the same reason as `cheapest_costs`: costs are sums of non-negative per-block
        terms, so the fewest blocks (free depths at their smallest) with each active block at its
        own cheapest combination of free genes is the minimum.
        """
        g = self.genome
        row = self.base[None, :].copy()
        free_depth = np.intersect1d(self.free, np.arange(g.n_stages))
        for s in free_depth:
            row[0, s] = int(np.argmin(g.space.stages[s].depth_choices))
        limits = budget.limits()

        def weight(costs: dict[str, np.ndarray]) -> np.ndarray:
            return sum(costs[k].astype(np.float64) / v for k, v in limits.items())

        for slot in np.flatnonzero(g.active(row)[0]):
            rows = g.slot_variants(row, slot, self.free)
            row = rows[[int(np.argmin(weight(table.score(rows))))]]
        return row[0]


def target_genome(table, base: np.ndarray | None = None, free: Iterable[str] = COLUMN_GROUPS
                  ) -> Genome | RestrictedGenome:
    """The genome a search over `table` proposes rows through.

    Where the table's hardware target executes a single bit-width (ONNX Runtime: int8), every bit
    gene is frozen at it, on top of any restriction (`base`, `free`) the caller asks for; elsewhere
    this is the plain genome (or `RestrictedGenome(genome, base, free)`). Every searcher builds
    its genome here, so no search proposes a sub-net its target cannot run.
    """
    genome = Genome(table.space)
    bits = getattr(getattr(table, "target", None), "frozen_bits", None)
    free = tuple(free)
    if bits is None:
        return genome if base is None else RestrictedGenome(genome, base, free)
    base = genome.with_bits(genome.largest() if base is None else base, bits)[0]
    return RestrictedGenome(genome, base, tuple(g for g in free if g != "bits"))


def run_restricted_evolution(scorer: CandidateScorer, genome: RestrictedGenome, budget: Budget,
                             config: EvolutionConfig, seed: int = 0, algorithm: str = "restricted-evolution"
                             ) -> SearchResult:
    """The local evolution driver over the restricted space.

    Raises `InfeasibleBudgetError` when the restricted space's cheapest row breaks the budget (the
    whole space may still be feasible: that is a finding about the restriction, not a bad budget).
    """
    cheapest = genome.cheapest(scorer.table, budget)
    costs = scorer.costs(cheapest)
    if not within(costs, budget)[0]:
        shown = ", ".join(f"{k}={float(costs[k][0]):.4g}" for k in COST_KEYS if k in budget.limits())
        raise InfeasibleBudgetError(f"no sub-net with only {list(genome.free_groups)} free fits budget "
                                    f"{budget.describe()}: the cheapest has {shown}")
    evo = Evolution(genome, config, lambda genes: fits(scorer.table, budget, genes), seed)
    result = drive(algorithm, evo, scorer, budget)
    result.extra["free"] = list(genome.free_groups)
    return result

"""The in-process driver: the same `Evolution` (or `RandomSearch`) the Tune searchers run, one batched
score per generation.

Tune pays its controller's per-trial cost (0.25-0.4 s on 2 cores) for every candidate; the paper's
50,000 candidates would take hours that way. Here a generation of 100 is one predictor call and one
LUT gather, and the whole budget takes seconds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ems_ray.space import Genome, SubnetConfig

from ._base import BatchSearch
from ._evolution import Evolution
from ._random import RandomSearch
from ._scoring import CandidateScorer, check_feasible, fits
from .config import Budget, EvolutionConfig


@dataclass
class SearchResult:
    """The best sub-net a search found, with its predicted accuracy and LUT costs."""

    algorithm: str
    budget: Budget
    genes: np.ndarray
    scores: dict[str, float]  # accuracy, latency_ms, energy_mj, macs, bitops
    scored: int  # candidates scored
    seconds: float
    history: list[float] = field(default_factory=list)  # best accuracy after each generation / trial
    extra: dict = field(default_factory=dict)

    def subnet(self, genome: Genome) -> SubnetConfig:
        return genome.to_config(self.genes)

    def to_json(self) -> dict:
        return {"algorithm": self.algorithm, "budget": self.budget.describe(), "genes": self.genes.tolist(),
                "scores": self.scores, "scored": self.scored, "seconds": self.seconds, "history": self.history,
                **self.extra}


def make_evolution(scorer: CandidateScorer, budget: Budget, config: EvolutionConfig, seed: int) -> Evolution:
    """An `Evolution` whose feasibility test is `budget` on the scorer's LUT (bits as its target runs them)."""
    from ._restricted import target_genome

    return Evolution(target_genome(scorer.table), config, lambda genes: fits(scorer.table, budget, genes), seed)


def make_random_search(scorer: CandidateScorer, budget: Budget, samples: int, seed: int,
                       max_resample_rounds: int = 200) -> RandomSearch:
    """A `RandomSearch` of `samples` candidates within `budget` on the scorer's LUT."""
    from ._restricted import target_genome

    return RandomSearch(target_genome(scorer.table), samples, lambda genes: fits(scorer.table, budget, genes), seed,
                        max_resample_rounds=max_resample_rounds)


def run_local_evolution(scorer: CandidateScorer, budget: Budget, config: EvolutionConfig | None = None,
                        seed: int = 0, check: bool = True) -> SearchResult:
    """Run the whole evolution in this process; `check` rejects an infeasible budget up front."""
    config = config or EvolutionConfig()
    if check:
        check_feasible(scorer.table, budget)
    return drive("evolution", make_evolution(scorer, budget, config, seed), scorer, budget)


def run_local_random(scorer: CandidateScorer, budget: Budget, samples: int = 1000, seed: int = 0,
                     check: bool = True, max_resample_rounds: int = 200) -> SearchResult:
    """Random search in this process: `samples` candidates within the budget, scored in batches."""
    if check:
        check_feasible(scorer.table, budget)
    return drive("random", make_random_search(scorer, budget, samples, seed, max_resample_rounds), scorer, budget)


def drive(algorithm: str, search: BatchSearch, scorer: CandidateScorer, budget: Budget) -> SearchResult:
    """ask/tell until done, one batched predictor call per batch."""
    t0 = time.perf_counter()
    while not search.done:
        rows = search.ask()
        search.tell(rows, scorer.accuracy(rows))
    genes, _ = search.best()
    seconds = time.perf_counter() - t0
    return SearchResult(algorithm, budget, genes, scorer.score_one(genes), search.scored, seconds, search.history)

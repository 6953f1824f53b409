"""The in-process driver: the same `Evolution` the Tune searcher runs, one batched score per generation.

Tune pays its controller's per-trial cost (about 0.4 s here) for every candidate; the paper's
50,000 candidates would take hours that way. Here a generation of 100 is one predictor call and one
LUT gather, and the whole budget takes seconds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ems_ray.space import Genome, SubnetConfig

from ._evolution import Evolution
from ._scoring import CandidateScorer, check_feasible, within
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
    """An `Evolution` whose feasibility test is `budget` on the scorer's LUT."""
    return Evolution(Genome(scorer.space), config, lambda genes: within(scorer.costs(genes), budget), seed)


def run_local_evolution(scorer: CandidateScorer, budget: Budget, config: EvolutionConfig | None = None,
                        seed: int = 0, check: bool = True) -> SearchResult:
    """Run the whole evolution in this process; `check` rejects an infeasible budget up front."""
    config = config or EvolutionConfig()
    if check:
        check_feasible(scorer.table, budget)
    t0 = time.perf_counter()
    evo = make_evolution(scorer, budget, config, seed)
    while not evo.done:
        evo.tell(scorer.accuracy(evo.ask()))
    genes, _ = evo.best()
    seconds = time.perf_counter() - t0
    return SearchResult("evolution", budget, genes, scorer.score_one(genes), evo.scored, seconds, evo.history)

"""Random search: independent candidates within the budget, the baseline every searcher must beat.

    rs = RandomSearch(genome, samples=1000, feasible=lambda g: within(table.score(g), budget), seed=0)
    while not rs.done:
        genes = rs.ask(100)                     # the next batch, every row within the budget
        rs.tell(genes, scorer.accuracy(genes))

Candidates come from the genome's `sample_spread`, the evolution's initial-population sampler
(half uniform rows, half shrunk towards the smallest choices) with over-budget rows rejected before
scoring, so random search is exactly the evolution without mutation and crossover, and a tight
budget that uniform rows almost never meet still yields candidates. Rows are drawn in fixed blocks
of `block` from one seeded Generator, so the sequence of candidates depends only on the seed and
the budget: drawn in batches of any size (local driver, or one batch per trial under Tune), the
same seed gives the same candidates. Candidates do not depend on scores, so several batches may be
out at once.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from ems_ray.errors import InputError
from ems_ray.space import Genome

from ._base import BatchSearch, as_scores
from ._evolution import fill_feasible


class RandomSearch(BatchSearch):
    """Ask/tell random search over `Genome` rows: `samples` candidates, `batch` per `ask()`."""

    def __init__(self, genome: Genome, samples: int, feasible: Callable[[np.ndarray], np.ndarray], seed: int = 0,
                 batch: int = 100, block: int = 100, max_resample_rounds: int = 200):
        if samples < 1 or batch < 1 or block < 1:
            raise InputError(f"random search: samples ({samples}), batch ({batch}) and block ({block}) must be >= 1")
        self.genome = genome
        self.samples, self.batch, self.block = samples, batch, block
        self.feasible = feasible
        self.max_resample_rounds = max_resample_rounds
        self.rng = np.random.default_rng(seed)
        self._buffer = np.zeros((0, genome.width), dtype=np.int16)
        self.drawn = 0  # candidates handed out (by `draw` or `ask`)
        self.scored = 0
        self.best_genes: np.ndarray | None = None
        self.best_fitness = -np.inf
        self.history: list[float] = []  # best fitness after each told batch

    @property
    def done(self) -> bool:
        return self.scored >= self.samples

    @property
    def exhausted(self) -> bool:
        """Every one of the `samples` candidates has been handed out."""
        return self.drawn >= self.samples

    def draw(self, n: int) -> np.ndarray:
        """The next (at most) `n` candidates of this seed's sequence, never more than `samples` in all."""
        n = max(0, min(n, self.samples - self.drawn))
        while len(self._buffer) < n:
            block = fill_feasible(self.block, lambda k: self.genome.sample_spread(self.rng, k), self.feasible,
                                  self.max_resample_rounds, "random search", self.genome.width)
            self._buffer = np.concatenate([self._buffer, block])
        rows, self._buffer = self._buffer[:n], self._buffer[n:]
        self.drawn += n
        return rows

    def ask(self, n: int | None = None) -> np.ndarray:
        """The next `n` (default `batch`) candidates of the sequence; empty once all are handed out."""
        return self.draw(self.batch if n is None else n)

    def tell(self, rows: np.ndarray, scores: np.ndarray) -> None:
        fitness = as_scores(scores, rows, "a batch")
        if len(fitness) and fitness.max() > self.best_fitness:
            i = int(np.argmax(fitness))
            self.best_genes, self.best_fitness = np.array(rows[i], dtype=np.int16), float(fitness[i])
        self.scored += len(fitness)
        self.history.append(self.best_fitness)

    def best(self) -> tuple[np.ndarray, float]:
        """(gene row, fitness) of the best candidate told so far."""
        if self.best_genes is None:
            raise RuntimeError("no candidate scored yet")
        return self.best_genes.copy(), self.best_fitness

    def get_state(self) -> dict:
        return {"rng": copy.deepcopy(self.rng.bit_generator.state), "buffer": self._buffer.copy(),
                "drawn": self.drawn, "scored": self.scored,
                "best_genes": None if self.best_genes is None else self.best_genes.copy(),
                "best_fitness": self.best_fitness, "history": list(self.history),
                "settings": {"samples": self.samples, "batch": self.batch, "block": self.block}}

    def set_state(self, state: dict) -> None:
        settings = {"samples": self.samples, "batch": self.batch, "block": self.block}
        if state["settings"] != settings:
            raise InputError(f"random search state was saved with other settings: {state['settings']} != {settings}")
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._buffer, self.drawn, self.scored = state["buffer"].copy(), state["drawn"], state["scored"]
        self.best_genes = None if state["best_genes"] is None else state["best_genes"].copy()
        self.best_fitness, self.history = state["best_fitness"], list(state["history"])

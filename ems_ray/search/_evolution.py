"""The resource-constrained evolution of the paper (section 3.3/4) on gene arrays, as ask/tell.

    evo = Evolution(genome, EvolutionConfig(), feasible=lambda g: within(table.score(g), budget), seed=0)
    while not evo.done:
        genes = evo.ask()                 # a whole generation, every row within the budget
        evo.tell(scorer.accuracy(genes))  # one fitness per row, higher is better

Lifecycle: `ask` returns the pending generation (the same array until `tell`); the first is the
random initial population, every later one `mutations` mutated plus `crossovers` crossed children
of the top `parents` of the population. `tell` merges the scored children into the population (kept
at the best `population` of parents and children, as the paper keeps parents plus children and
breeds from their top-25) and advances one generation. All randomness comes from one numpy
Generator seeded once, so the same seed and the same fitness values give the same search, whoever
calls ask/tell (the local driver, or `EvolutionSearcher` under Ray Tune) and in whatever order the
scores arrive.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from ems_ray.errors import InputError
from ems_ray.space import Genome

from ._scoring import InfeasibleBudgetError
from .config import EvolutionConfig


class Evolution:
    """Ask/tell evolution over `Genome` rows; `feasible(genes) -> bool mask` rejects before scoring."""

    def __init__(self, genome: Genome, config: EvolutionConfig, feasible: Callable[[np.ndarray], np.ndarray],
                 seed: int = 0):
        self.genome = genome
        self.config = config
        self.feasible = feasible
        self.rng = np.random.default_rng(seed)
        self.generation = 0  # generations scored so far
        self.population = np.zeros((0, genome.width), dtype=np.int16)
        self.fitness = np.zeros(0, dtype=np.float64)
        self.pending: np.ndarray | None = None
        self.history: list[float] = []  # best fitness after each generation
        self.scored = 0

    @property
    def done(self) -> bool:
        return self.generation >= self.config.generations

    def ask(self) -> np.ndarray:
        """The generation waiting for scores (empty once `done`)."""
        if self.done:
            return np.zeros((0, self.genome.width), dtype=np.int16)
        if self.pending is None:
            self.pending = self._propose()
        return self.pending

    def tell(self, fitness: np.ndarray) -> None:
        """Scores of the rows `ask` returned, in the same order."""
        if self.pending is None:
            raise RuntimeError("tell() before ask(): no generation is waiting for scores")
        fitness = np.asarray(fitness, dtype=np.float64).ravel()
        if len(fitness) != len(self.pending):
            raise InputError(f"tell(): {len(fitness)} scores for a generation of {len(self.pending)}")
        genes = np.concatenate([self.population, self.pending])
        scores = np.concatenate([self.fitness, np.where(np.isnan(fitness), -np.inf, fitness)])
        keep = np.argsort(-scores, kind="stable")[: self.config.population]
        self.population, self.fitness = genes[keep], scores[keep]
        self.scored += len(fitness)
        self.pending = None
        self.generation += 1
        self.history.append(float(self.fitness[0]))

    def best(self) -> tuple[np.ndarray, float]:
        """(gene row, fitness) of the best candidate scored so far."""
        if not len(self.population):
            raise RuntimeError("no candidate scored yet")
        return self.population[0].copy(), float(self.fitness[0])

    # ----- proposals -----------------------------------------------------------------------------
    def _propose(self) -> np.ndarray:
        g, c, rng = self.genome, self.config, self.rng
        if self.generation == 0:
            return self._fill(c.population, self._sample, "initial population")
        parents = self.population[: c.parents]
        mutated = self._fill(c.mutations, lambda k: g.mutate(parents[rng.integers(len(parents), size=k)], rng,
                                                             c.mutation_prob), "mutation")
        crossed = self._fill(c.crossovers, lambda k: g.crossover(parents[rng.integers(len(parents), size=k)],
                                                                 parents[rng.integers(len(parents), size=k)], rng),
                             "crossover")
        return np.concatenate([mutated, crossed])

    def _sample(self, k: int) -> np.ndarray:
        return self.genome.sample_spread(self.rng, k)  # through the genome: a restriction applies

    def _fill(self, n: int, propose: Callable[[int], np.ndarray], what: str) -> np.ndarray:
        return fill_feasible(n, propose, self.feasible, self.config.max_resample_rounds, what, self.genome.width)

    # ----- state ---------------------------------------------------------------------------------
    def get_state(self) -> dict:
        return {
            "rng": copy.deepcopy(self.rng.bit_generator.state), "generation": self.generation,
            "population": self.population.copy(), "fitness": self.fitness.copy(),
            "pending": None if self.pending is None else self.pending.copy(),
            "history": list(self.history), "scored": self.scored, "config": self.config.model_dump(),
        }

    def set_state(self, state: dict) -> None:
        if state["config"] != self.config.model_dump():
            raise InputError("evolution state was saved with other settings: "
                             f"{state['config']} != {self.config.model_dump()}")
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.generation = state["generation"]
        self.population, self.fitness = state["population"].copy(), state["fitness"].copy()
        self.pending = None if state["pending"] is None else state["pending"].copy()
        self.history, self.scored = list(state["history"]), state["scored"]


def fill_feasible(n: int, propose: Callable[[int], np.ndarray], feasible: Callable[[np.ndarray], np.ndarray],
                  rounds: int, what: str, width: int) -> np.ndarray:
    """n feasible rows from batched proposals (rejected ones are never scored); raises
    `InfeasibleBudgetError` when `rounds` batches do not yield them."""
    found: list[np.ndarray] = []
    missing = n
    for _ in range(rounds):
        if missing == 0:
            break
        batch = propose(max(2 * missing, 16))
        ok = batch[feasible(batch)][:missing]
        found.append(ok)
        missing -= len(ok)
    if missing:
        raise InfeasibleBudgetError(
            f"{what}: found only {n - missing} of {n} candidates within the budget after "
            f"{rounds} rounds of sampling; relax the budget")
    return np.concatenate(found).astype(np.int16) if found else np.zeros((0, width), np.int16)

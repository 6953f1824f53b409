"""The resource-constrained evolution of the paper (section 3.3/4) on gene arrays, as ask/tell.

    evo = Evolution(genome, EvolutionConfig(), feasible=lambda g: within(table.score(g), budget), seed=0)
    while not evo.done:
        genes = evo.ask()                        # a whole generation, every row within the budget
        evo.tell(genes, scorer.accuracy(genes))  # one fitness per row, higher is better

Lifecycle (`BatchSearch`): `ask` hands out the next generation, then nothing (an empty batch)
until that generation is told; the first is the random initial population, every later one
`mutations` mutated plus `crossovers` crossed children of the top `parents` of the population. `tell` merges the scored children into the population (kept
at the best `population` of parents and children, as the paper keeps parents plus children and
breeds from their top-25) and advances one generation. `ParetoEvolution` is the same evolution
with NSGA-II's selection (non-dominated fronts, then crowding) over accuracy and LUT costs, for
Pareto fronts (`ems_ray/search/pareto.py`).

With `distinct` (the default) the population holds distinct networks, compared by canonical genes
(`Genome.canonical`: genes of skipped blocks do not count), and a proposal that repeats a member or
an earlier proposal is resampled like an over-budget one. Without it (APQ's evolution) the best
network soon fills the whole population, crossovers of identical parents copy it, and the late
generations are mutation-only and re-score known networks (docs/BENCHMARKS.md). All randomness comes from one numpy
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

from ._base import BatchSearch, as_scores
from ._pareto import nsga2_order
from ._scoring import InfeasibleBudgetError
from .config import EvolutionConfig

NOVEL_ROUNDS = 4  # batched rounds that look for networks new to the population before repeats are allowed


class Evolution(BatchSearch):
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
        self.pending: np.ndarray | None = None  # the generation handed out, waiting for its scores
        self.history: list[float] = []  # best fitness after each generation
        self.scored = 0
        self._seen: set[bytes] | None = None

    @property
    def done(self) -> bool:
        return self.generation >= self.config.generations

    def ask(self, n: int | None = None) -> np.ndarray:
        """The next generation (whatever `n`), or an empty batch while one waits for its scores
        or once `done`."""
        if self.done or self.pending is not None:
            return np.zeros((0, self.genome.width), dtype=np.int16)
        self.pending = self._propose()
        return self.pending

    def tell(self, rows: np.ndarray, scores: np.ndarray) -> None:
        """Scores of the generation `ask` handed out (the same rows, in the same order)."""
        if self.pending is None:
            raise RuntimeError("tell() before ask(): no generation is waiting for scores")
        if not np.array_equal(np.asarray(rows), self.pending):
            raise InputError("tell(): the rows are not the generation waiting for scores")
        fitness = as_scores(scores, self.pending, "a generation")
        genes = np.concatenate([self.population, self.pending])
        scores = np.concatenate([self.fitness, fitness])
        keep = self._select(genes, scores)[: self.config.population]
        self.population, self.fitness = genes[keep], scores[keep]
        self.scored += len(fitness)
        self.pending = None
        self.generation += 1
        self.history.append(self.best()[1])

    def _select(self, genes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Indices of parents and children, best first (the population is the head of it): by
        fitness, and with `distinct` only the best-scored copy of each network."""
        order = np.argsort(-scores, kind="stable")
        if self.config.distinct:
            order = order[_first_copies(self.genome.canonical(genes[order]))]
        return order

    def best(self) -> tuple[np.ndarray, float]:
        """(gene row, fitness) of the best candidate scored so far."""
        if not len(self.population):
            raise RuntimeError("no candidate scored yet")
        return self.population[0].copy(), float(self.fitness[0])

    # ----- proposals -----------------------------------------------------------------------------
    def _propose(self) -> np.ndarray:
        g, c, rng = self.genome, self.config, self.rng
        self._seen = None  # canonical keys of the population and of this generation's proposals so far
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
        rounds, width = self.config.max_resample_rounds, self.genome.width
        novel = np.zeros((0, width), dtype=np.int16)
        if self.config.distinct:
            # a converged population's crossovers mostly rebuild its own members: after a few
            # rounds, the rest may repeat networks (the population still keeps one copy of each)
            novel = fill_feasible(n, propose, self._novel_and_feasible, NOVEL_ROUNDS, what, width, required=False)
        if len(novel) == n:
            return novel
        return np.concatenate([novel, fill_feasible(n - len(novel), propose, self.feasible, rounds, what, width)])

    def _novel_and_feasible(self, rows: np.ndarray) -> np.ndarray:
        """Within the budget and a network neither in the population nor proposed before in this
        generation (an accepted row's key is remembered even if `fill_feasible` drops it: harmless)."""
        if self._seen is None:
            self._seen = set(_keys(self.genome.canonical(self.population)))
        ok = _add_novel(self._seen, _keys(self.genome.canonical(rows)))
        ok[ok] = self.feasible(rows[ok])
        return ok

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


def _keys(rows: np.ndarray) -> list[bytes]:
    """Each row's bytes (`row.tobytes()`), made in one C loop: the rows viewed as one void item each."""
    rows = np.ascontiguousarray(rows, dtype=np.int16)
    return rows.view(np.dtype((np.void, 2 * rows.shape[1]))).ravel().tolist() if rows.shape[1] else [b""] * len(rows)


def _add_novel(seen: set[bytes], keys: list[bytes]) -> np.ndarray:
    """(n,) bool: which keys were not in `seen` (nor earlier in `keys`); adds them all to `seen`."""
    return np.fromiter((key not in seen and not seen.add(key) for key in keys), dtype=bool, count=len(keys))


def _first_copies(canonical: np.ndarray) -> np.ndarray:
    """Positions of the first row of each distinct (canonical) network, in order."""
    first: dict[bytes, int] = {}
    for i, key in enumerate(_keys(canonical)):
        first.setdefault(key, i)
    return np.fromiter(first.values(), dtype=np.intp, count=len(first))


class ParetoEvolution(Evolution):
    """The evolution with NSGA-II's selection: several objectives instead of one fitness.

    Proposals, budget rejection, distinctness and the ask/tell lifecycle are `Evolution`'s; only
    the selection differs. `objectives(genes, accuracy) -> (n, m)` gives the values to minimise
    (accuracy negated and the chosen LUT costs: `objective_matrix`), and parents plus children are
    ordered by non-dominated front, then by crowding distance (`nsga2_order`), so the population
    is the best fronts, spread along them, and its top `parents` breed. `tell` still takes one
    score per row (the predicted accuracy; the costs come from the LUT); `fitness` is accuracy and
    `best()` the most accurate member. The front of a whole run is kept by its driver
    (`ParetoArchive`), not by the population, which holds only the last generation's survivors.
    """

    def __init__(self, genome: Genome, config: EvolutionConfig, feasible: Callable[[np.ndarray], np.ndarray],
                 objectives: Callable[[np.ndarray, np.ndarray], np.ndarray], seed: int = 0):
        super().__init__(genome, config, feasible, seed)
        self.objectives = objectives

    def _select(self, genes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        # one copy of each network first: copies have equal points and would crowd each other out
        unique = _first_copies(self.genome.canonical(genes)) if self.config.distinct else np.arange(len(genes))
        return unique[nsga2_order(self.objectives(genes[unique], scores[unique]))]

    def best(self) -> tuple[np.ndarray, float]:
        """(gene row, accuracy) of the most accurate member of the population."""
        if not len(self.population):
            raise RuntimeError("no candidate scored yet")
        i = int(np.argmax(self.fitness))
        return self.population[i].copy(), float(self.fitness[i])


def fill_feasible(n: int, propose: Callable[[int], np.ndarray], feasible: Callable[[np.ndarray], np.ndarray],
                  rounds: int, what: str, width: int, required: bool = True) -> np.ndarray:
    """n feasible rows from batched proposals (rejected ones are never scored); raises
    `InfeasibleBudgetError` when `rounds` batches do not yield them (`required=False`: returns the
    fewer rows found)."""
    found: list[np.ndarray] = []
    missing = n
    size = max(2 * missing, 16)
    for _ in range(rounds):
        if missing == 0:
            break
        batch = propose(size)
        accept = feasible(batch)
        ok = batch[accept][:missing]
        found.append(ok)
        missing -= len(ok)
        # twice the rows the last round's acceptance rate says are needed: a few large batches,
        # not many small ones, when most proposals are rejected
        rate = max(accept.mean(), 1 / 16)
        size = max(2 * missing, 16) if rate >= 0.5 else int(np.ceil(2 * max(missing, 8) / rate))
    if missing and not required:
        return np.concatenate(found).astype(np.int16)
    if missing:
        raise InfeasibleBudgetError(
            f"{what}: found only {n - missing} of {n} candidates within the budget after "
            f"{rounds} rounds of sampling; relax the budget")
    return np.concatenate(found).astype(np.int16) if found else np.zeros((0, width), np.int16)

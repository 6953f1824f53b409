"""Our searchers as Ray Tune `Searcher`s: the paper's evolution and random search, one candidate
per trial, over one categorical choice index per gene column (`gene_names`: `depth0`, ...,
`b00_kernel`, `b00_mid`, ...), so the evolution, Optuna and Tune's own views see the same space.

`save`/`restore` carry each searcher's whole state, so `Tuner.restore` resumes a search exactly;
Tune also pickles the searcher object into the Tuner state, so a searcher holds plain data only.
"""
from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.search import Searcher

from ems_ray.artifacts import write_atomic
from ems_ray.errors import InputError
from ems_ray.space import Genome

from .._evolution import Evolution
from .._random import RandomSearch
from .._scoring import gene_names, within
from ..config import Budget, EvolutionConfig

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable

METRIC, MODE = "accuracy", "max"


def param_space(genome: Genome) -> dict[str, Any]:
    """Tune's parameter space: a categorical choice of index per gene column."""
    from ray import tune

    return {name: tune.choice(list(range(int(n)))) for name, n in zip(gene_names(genome), genome.choice_counts)}


def config_to_genes(config: dict, names: list[str]) -> np.ndarray:
    return np.asarray([int(config[n]) for n in names], dtype=np.int16)


class _GeneSearcher(Searcher):
    """What the gene-row searchers share: one config key per gene column, state tied to a budget, and
    `save`/`restore` as a pickle of `get_state()` (Tune calls them at each experiment checkpoint, so
    `Tuner.restore` resumes the search where the last checkpoint left it).

    Tune also pickles the searcher object itself (the Tuner state), so a searcher holds only plain
    data, the cost table and its own objects: nothing whose pickling a library may change."""

    def __init__(self, table: CostTable, budget: Budget, metric: str = METRIC, mode: str = MODE,
                 genome: Genome | None = None):
        super().__init__(metric=metric, mode=mode)
        self.table = table
        self.budget = budget
        self.genome = genome or Genome(table.space)  # e.g. a `RestrictedGenome`: candidates follow it
        self.names = gene_names(self.genome)

    def feasible(self, genes: np.ndarray) -> np.ndarray:
        """Which gene rows the budget admits (a method, not a closure: it pickles with the searcher)."""
        return within(self.table.score(genes), self.budget)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def _config(self, row: np.ndarray) -> dict:
        return {name: int(v) for name, v in zip(self.names, row)}

    def get_state(self) -> dict:
        return {"metric": self._metric, "mode": self._mode, "budget": self.budget.model_dump()}

    def set_state(self, state: dict) -> None:
        if Budget(**state["budget"]) != self.budget:
            raise InputError(f"searcher state was saved for budget {Budget(**state['budget']).describe()}, "
                             f"not {self.budget.describe()}")
        self._metric, self._mode = state["metric"], state["mode"]

    def save(self, checkpoint_path: str) -> None:
        write_atomic(checkpoint_path, pickle.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


class EvolutionSearcher(_GeneSearcher):
    """The paper's evolution (`Evolution`) handing out one candidate per trial.

    `suggest` gives the next candidate of the current generation, or None while the generation's
    last scores are outstanding (Tune then waits), or FINISHED after the last generation.
    `on_trial_complete` stores the trial's `metric`; the generation advances when every candidate
    has a score (errored trials count as the worst), whatever order they finish in, so the search
    is the local driver's search for the same seed. `save`/`restore` carry the whole state
    (generation, population, random state, trials in flight), so `Tuner.restore` resumes it.
    """

    def __init__(self, table: CostTable, budget: Budget, config: EvolutionConfig | None = None, seed: int = 0,
                 metric: str = METRIC, mode: str = MODE, genome: Genome | None = None):
        super().__init__(table, budget, metric, mode, genome)
        self.evolution = Evolution(self.genome, config or EvolutionConfig(), self.feasible, seed)
        self._handed = 0  # candidates of the pending generation handed out
        self._trials: dict[str, tuple[int, int]] = {}  # trial id -> (generation, row)
        self._scores: dict[int, float] = {}  # row -> fitness, pending generation

    def suggest(self, trial_id: str) -> dict | str | None:
        evo = self.evolution
        if evo.done:
            return Searcher.FINISHED
        genes = evo.ask()
        if self._handed >= len(genes):
            return None
        row = self._handed
        self._handed += 1
        self._trials[trial_id] = (evo.generation, row)
        return self._config(genes[row])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        generation, row = self._trials.pop(trial_id, (None, None))
        evo = self.evolution
        if generation != evo.generation or evo.pending is None:
            return
        value = (result or {}).get(self._metric)
        if error or value is None or not np.isfinite(value):
            fitness = -np.inf
        else:
            fitness = float(value) if self._mode == "max" else -float(value)
        self._scores[row] = fitness
        if len(self._scores) == len(evo.pending):
            evo.tell(np.asarray([self._scores[i] for i in range(len(evo.pending))]))
            self._handed, self._scores = 0, {}

    def best(self) -> tuple[np.ndarray, float]:
        return self.evolution.best()

    def get_state(self) -> dict:
        return {**super().get_state(), "evolution": self.evolution.get_state(), "handed": self._handed,
                "trials": dict(self._trials), "scores": dict(self._scores)}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.evolution.set_state(state["evolution"])
        self._handed, self._trials, self._scores = state["handed"], dict(state["trials"]), dict(state["scores"])


class RandomSearcher(_GeneSearcher):
    """Random search (`RandomSearch`) handing out one candidate per trial, `samples` in all.

    Tune's own `BasicVariantGenerator` samples the param space uniformly and cannot be told the
    budget: under a tight budget most of its trials would be over-budget candidates, scored and
    thrown away. This searcher draws from the Evolution's sampler with over-budget rows rejected
    before they become trials, in the local driver's sequence for the same seed. Candidates do not
    depend on scores, so it never waits on a trial; a trial re-run after `Tuner.restore` keeps its
    config and the restored sequence continues after the last handed-out candidate.
    """

    def __init__(self, table: CostTable, budget: Budget, samples: int, seed: int = 0, metric: str = METRIC,
                 mode: str = MODE, max_resample_rounds: int = 200, genome: Genome | None = None):
        super().__init__(table, budget, metric, mode, genome)
        self.search = RandomSearch(self.genome, samples, self.feasible, seed, max_resample_rounds=max_resample_rounds)

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.search.exhausted:
            return Searcher.FINISHED
        return self._config(self.search.draw(1)[0])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: the candidates are fixed by the seed; Tune keeps the scores."""

    def get_state(self) -> dict:
        return {**super().get_state(), "search": self.search.get_state()}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self.search.set_state(state["search"])

"""Optuna TPE and NSGA-II through Optuna's own ask/tell API, as a `BatchSearch`, and their Tune searcher."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ems_ray.errors import InputError

from .._base import BatchSearch, as_scores
from .._restricted import target_genome
from .._scoring import gene_names, within
from ..config import Budget
from .searchers import METRIC, MODE, BatchSearcher

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable

OPTUNA_ALGORITHMS = ("tpe", "nsga2")


def budget_constraints(table: CostTable, budget: Budget, genes: np.ndarray) -> dict[str, float]:
    """Optuna constraint values of one row: cost minus limit per bounded cost (feasible: all <= 0)."""
    costs = table.score(np.asarray(genes)[None, :])
    return {key: float(costs[key][0] - limit) for key, limit in budget.limits().items()}


class OptunaSearch(BatchSearch):
    """Optuna TPE (objective: accuracy) or NSGA-II (objectives: accuracy and the LUT costs
    `objectives`, default the budget's first cost; a multi-objective study), `samples` candidates, each `ask(n)` n `study.ask()` calls (NSGA-II: one generation of
    `population`, whatever n), each `tell` one `study.tell` per row.

    `budget` may be None for NSGA-II (a Pareto front without hard limits).

    TPE runs with `constant_liar`, so the asks of one batch, all running when the next is asked,
    spread instead of repeating. Both see the budget as Optuna constraints (`Trial.set_constraint`,
    cost minus limit from the LUT, set when the trial is asked): TPE models feasible trials apart,
    NSGA-II uses constrained domination. Optuna's cost per ask grows with the trials so far (TPE
    fits its Parzen estimators on every finished trial; NSGA-II scans the study for its
    generation), which is what `bench_search.py` records.

    Optuna's samplers are not ours to pickle (NSGA-II holds a thread lock since Optuna 5), so this
    search keeps only its settings and a log of what it did: each ask (with its params) and each
    tell (with its values). The study has one sampler, seeded once from `seed` (a sampler rebuilt
    per ask, as before, recomputed Optuna's intersection search space over the whole study at
    every ask: that, not the samplers' own models, made both cost ~0.3 s per candidate at 1,000).
    After unpickling or `set_state` the study is rebuilt by replaying that log in order, each ask
    asked again and checked against the log, so the sampler's random state and caches, NSGA-II's
    generations and parent populations, are rebuilt the way they were made; the rebuilt study then
    asks exactly what the uninterrupted one would have. The replay costs what those asks cost.
    """

    def __init__(self, algorithm: str, table: CostTable, budget: Budget | None, samples: int, seed: int = 0,
                 population: int = 50, objectives: tuple[str, ...] | None = None):
        if algorithm not in OPTUNA_ALGORITHMS:
            raise InputError(f"algorithm: '{algorithm}' is not an Optuna searcher; "
                             f"allowed values: {list(OPTUNA_ALGORITHMS)}")
        if budget is None and not objectives:
            raise InputError(f"{algorithm}: needs a budget or the costs to minimise (objectives)")
        self.table, self.budget, self.samples = table, budget, int(samples)
        self.genome = target_genome(table)
        self.names = gene_names(self.genome)
        self.algorithm, self.seed, self.population = algorithm, int(seed), int(population)
        # NSGA-II's objectives after accuracy (minimised)
        self.costs = tuple(objectives) if objectives else (next(iter(budget.limits())),)
        self._log: list[tuple] = []  # ("ask", number, params) and ("tell", number, values or None)
        self._asked = 0
        self._told = 0
        self._live: dict[bytes, list[int]] = {}  # row bytes -> trial numbers asked and not yet told
        self._best: tuple[np.ndarray | None, float] = (None, -np.inf)
        self._study = None

    # --- the Optuna study, rebuilt from the log ---------------------------------------------------
    def _sampler(self):
        """The study's one sampler, seeded once: Optuna's samplers keep incremental caches across
        asks (the intersection search space above all, which a fresh sampler recomputes over every
        trial of the study: 132 distributions compared per trial, per ask)."""
        import optuna

        seed = int(np.random.SeedSequence([self.seed]).generate_state(1)[0])
        if self.algorithm == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        return optuna.samplers.NSGAIISampler(population_size=self.population, seed=seed)

    @property
    def distributions(self) -> dict:
        """One categorical distribution per gene, the same objects at every ask (built once)."""
        from optuna.distributions import CategoricalDistribution

        if getattr(self, "_distributions", None) is None:
            frozen = dict.fromkeys(getattr(self.genome, "frozen", []))  # genes the target fixes: one choice
            self._distributions = {
                name: CategoricalDistribution([int(self.genome.base[i])] if i in frozen else list(range(int(n))))
                for i, (name, n) in enumerate(zip(self.names, self.genome.choice_counts))}
        return self._distributions

    @property
    def study(self):
        """The Optuna study of every trial asked so far (rebuilt from the log after a restore)."""
        if self._study is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            directions = ["maximize"] + (["minimize"] * len(self.costs) if self.algorithm == "nsga2" else [])
            study = optuna.create_study(directions=directions, sampler=self._sampler())
            for event, number, data in self._log:  # the same calls in the same order: the same sampler state
                if event == "tell":
                    self._tell(study, number, data)
                    continue
                if self._ask(study, number) != data:
                    raise InputError(f"the {self.algorithm} searcher's saved log does not replay with Optuna "
                                     f"{optuna.__version__} (trial {number} differs): resume with the Optuna "
                                     "version that started the search, or start it anew in another folder")
            self._study = study
        return self._study

    def _ask(self, study, number: int) -> dict[str, int]:
        trial = study.ask(self.distributions)
        if trial.number != number:
            raise RuntimeError(f"Optuna numbered trial {number} as {trial.number}: the searcher's log is out of step")
        asked = trial.params  # a deep copy per access: once, not once per gene
        params = {name: int(asked[name]) for name in self.names}
        if self.budget is not None:
            genes = np.asarray(list(params.values()), dtype=np.int16)
            for key, value in budget_constraints(self.table, self.budget, genes).items():
                trial.set_constraint(key, value)
        return params

    def _tell(self, study, number: int, values: list[float] | None) -> None:
        from optuna.trial import TrialState

        if values is None:
            study.tell(number, state=TrialState.FAIL)
        else:
            study.tell(number, values)

    # --- BatchSearch ------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._told >= self.samples

    def ask(self, n: int | None = None) -> np.ndarray:
        k = self.population if self.algorithm == "nsga2" or n is None else int(n)
        rows = []
        for _ in range(max(0, min(k, self.samples - self._asked))):
            number = self._asked
            params = self._ask(self.study, number)
            self._log.append(("ask", number, params))
            self._asked += 1
            rows.append(list(params.values()))
            self._live.setdefault(np.asarray(rows[-1], dtype=np.int16).tobytes(), []).append(number)
        return np.asarray(rows, dtype=np.int16).reshape(len(rows), self.genome.width)

    def tell(self, rows: np.ndarray, scores: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int16)
        scores = as_scores(scores, rows, "a batch")
        costs = self.table.score(rows)
        feasible = within(costs, self.budget) if self.budget is not None else np.ones(len(rows), dtype=bool)
        objective_costs = np.stack([costs[key] for key in self.costs], axis=1).astype(np.float64)
        for row, score, cost, ok in zip(rows, scores, objective_costs, feasible):
            numbers = self._live.get(row.tobytes())
            if not numbers:
                raise InputError("tell(): a row that was not asked, or told twice")
            number = numbers.pop(0)
            if not numbers:
                del self._live[row.tobytes()]
            told = None if not np.isfinite(score) else [float(score)] + (
                [float(c) for c in cost] if self.algorithm == "nsga2" else [])
            self._tell(self.study, number, told)
            self._log.append(("tell", number, told))
            self._told += 1
            if ok and np.isfinite(score) and score > self._best[1]:
                self._best = (row.copy(), float(score))

    def best(self) -> tuple[np.ndarray, float]:
        """The best within-budget row told so far (Optuna may propose over-budget ones)."""
        if self._best[0] is None:
            raise RuntimeError("no candidate within the budget told yet")
        return self._best[0].copy(), self._best[1]

    def get_state(self) -> dict:
        return {"algorithm": self.algorithm, "seed": self.seed, "population": self.population,
                "samples": self.samples, "costs": list(self.costs), "log": list(self._log), "asked": self._asked, "told": self._told,
                "live": {k: list(v) for k, v in self._live.items()},
                "best": (None if self._best[0] is None else self._best[0].copy(), self._best[1])}

    def set_state(self, state: dict) -> None:
        mine = (self.algorithm, self.seed, self.population, self.samples)
        saved = (state["algorithm"], state["seed"], state["population"], state["samples"])
        if saved != mine:
            raise InputError(f"searcher state was saved for {saved[0]} (seed {saved[1]}, population {saved[2]}, "
                             f"{saved[3]} samples), not {mine[0]} (seed {mine[1]}, population {mine[2]}, "
                             f"{mine[3]} samples)")
        if tuple(state.get("costs", self.costs)) != self.costs:
            raise InputError(f"searcher state was saved for objectives {state['costs']}, not {list(self.costs)}")
        self._log, self._asked, self._told = list(state["log"]), state["asked"], state["told"]
        self._live = {k: list(v) for k, v in state["live"].items()}
        self._best = state["best"]
        self._study = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_study": None, "_distributions": None}


class OptunaSearcher(BatchSearcher):
    """`OptunaSearch` under Tune: `batch` asks per trial (TPE), one generation per trial (NSGA-II)."""

    def __init__(self, algorithm: str, table: CostTable, budget: Budget, samples: int, seed: int = 0,
                 population: int = 50, batch: int = 100, metric: str = METRIC, mode: str = MODE):
        super().__init__(OptunaSearch(algorithm, table, budget, samples, seed, population), table, budget, batch,
                         metric, mode)

    @property
    def study(self):
        return self.search.study


def optuna_searcher(algorithm: str, table: CostTable, budget: Budget, seed: int = 0, population: int = 50,
                    samples: int = 100, batch: int = 100) -> OptunaSearcher:
    """The Tune searcher for Optuna TPE (`batch` asks per trial) or NSGA-II (population
    `population`, one generation per trial) under `budget`, `samples` candidates."""
    return OptunaSearcher(algorithm, table, budget, samples, seed, population, batch)

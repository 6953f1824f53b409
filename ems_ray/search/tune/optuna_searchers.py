"""Optuna TPE and NSGA-II as a Ray Tune `Searcher`, through Optuna's own ask/tell API."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ems_ray.errors import InputError

from ..config import Budget
from .searchers import METRIC, MODE, _GeneSearcher

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable


def budget_constraints(table: CostTable, budget: Budget, genes: np.ndarray) -> dict[str, float]:
    """Optuna constraint values of one row: cost minus limit per bounded cost (feasible: all <= 0)."""
    costs = table.score(np.asarray(genes)[None, :])
    return {key: float(costs[key][0] - limit) for key, limit in budget.limits().items()}


OPTUNA_ALGORITHMS = ("tpe", "nsga2")


class OptunaSearcher(_GeneSearcher):
    """Optuna TPE (objective: accuracy) or NSGA-II (objectives: accuracy and the budget's first cost)
    through Optuna's ask/tell API, one `study.ask()` per Tune trial.

    Both see the budget as Optuna constraints (`Trial.set_constraint`, cost minus limit from the LUT,
    set when the trial is asked): TPE models feasible trials apart, NSGA-II uses constrained
    domination.

    Optuna's samplers are not ours to pickle (NSGA-II holds a thread lock since Optuna 5), so this
    searcher keeps only its settings and a log of what it did: each ask (with its params) and
    each tell (with its values). Every ask uses a sampler seeded from (seed, trial number), so
    after unpickling or `restore` the study is rebuilt by replaying that log in order: NSGA-II asks
    again (its generations and cached parent populations live in the study and must be rebuilt the
    way they were made; each replayed ask is checked against the log), TPE takes the logged params
    through `enqueue_trial` (it keeps no state beyond the trials, and its asks grow with the
    history). The rebuilt study then asks exactly what the uninterrupted one would have, so
    `Tuner.restore` resumes it.
    """

    def __init__(self, algorithm: str, table: CostTable, budget: Budget, seed: int = 0, population: int = 50,
                 metric: str = METRIC, mode: str = MODE):
        if algorithm not in OPTUNA_ALGORITHMS:
            raise InputError(f"algorithm: '{algorithm}' is not an Optuna searcher; "
                             f"allowed values: {list(OPTUNA_ALGORITHMS)}")
        super().__init__(table, budget, metric, mode)
        self.algorithm, self.seed, self.population = algorithm, int(seed), int(population)
        self.cost = next(iter(budget.limits()))  # NSGA-II's second objective
        self._log: list[tuple] = []  # ("ask", number, params) and ("tell", number, values or None)
        self._asked = 0
        self._live: dict[str, int] = {}  # Tune trial id -> trial number, asked and not yet told
        self._study = None

    # --- the Optuna study, rebuilt from the log ---------------------------------------------------
    def _sampler(self, number: int):
        import optuna

        seed = int(np.random.SeedSequence([self.seed, number]).generate_state(1)[0])
        if self.algorithm == "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        return optuna.samplers.NSGAIISampler(population_size=self.population, seed=seed)

    @property
    def distributions(self) -> dict:
        from optuna.distributions import CategoricalDistribution

        return {name: CategoricalDistribution(list(range(int(n))))
                for name, n in zip(self.names, self.genome.choice_counts)}

    @property
    def study(self):
        """The Optuna study of every trial asked so far (rebuilt from the log after a restore)."""
        if self._study is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            directions = ["maximize"] if self.algorithm == "tpe" else ["maximize", "minimize"]
            study = optuna.create_study(directions=directions, sampler=self._sampler(0))
            for event, number, data in self._log:
                if event == "tell":
                    self._tell(study, number, data)
                    continue
                if self.algorithm == "tpe":  # TPE keeps no state beyond the trials: fix the params
                    study.enqueue_trial(data)
                if self._ask(study, number) != data:
                    raise InputError(f"the {self.algorithm} searcher's saved log does not replay with Optuna "
                                     f"{optuna.__version__} (trial {number} differs): resume with the Optuna "
                                     "version that started the search, or start it anew in another folder")
            self._study = study
        return self._study

    def _ask(self, study, number: int) -> dict[str, int]:
        study.sampler = self._sampler(number)
        trial = study.ask(self.distributions)
        if trial.number != number:
            raise RuntimeError(f"Optuna numbered trial {number} as {trial.number}: the searcher's log is out of step")
        params = {name: int(trial.params[name]) for name in self.names}
        genes = np.asarray(list(params.values()), dtype=np.int16)
        for key, value in budget_constraints(self.table, self.budget, genes).items():
            trial.set_constraint(key, value)
        return params

    def _tell(self, study, number: int, values: list[float] | None) -> None:
        from optuna.trial import TrialState

        study.sampler = self._sampler(number)
        if values is None:
            study.tell(number, state=TrialState.FAIL)
        else:
            study.tell(number, values)

    # --- Tune's Searcher interface ----------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict:
        number = self._asked
        params = self._ask(self.study, number)
        self._log.append(("ask", number, params))
        self._asked += 1
        self._live[trial_id] = number
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self._live.pop(trial_id, None)
        if number is None:
            return
        result = result or {}
        values = [result.get(self._metric)] + ([result.get(self.cost)] if self.algorithm == "nsga2" else [])
        told = None if error or any(v is None or not np.isfinite(v) for v in values) else [float(v) for v in values]
        self._tell(self.study, number, told)
        self._log.append(("tell", number, told))

    def get_state(self) -> dict:
        return {**super().get_state(), "algorithm": self.algorithm, "seed": self.seed,
                "population": self.population, "log": list(self._log), "asked": self._asked,
                "live": dict(self._live)}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        mine = (self.algorithm, self.seed, self.population)
        if (state["algorithm"], state["seed"], state["population"]) != mine:
            raise InputError(f"searcher state was saved for {state['algorithm']} (seed {state['seed']}, population "
                             f"{state['population']}), not {mine[0]} (seed {mine[1]}, population {mine[2]})")
        self._log, self._asked, self._live = list(state["log"]), state["asked"], dict(state["live"])
        self._study = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_study": None}


def optuna_searcher(algorithm: str, table: CostTable, budget: Budget, seed: int = 0,
                    population: int = 50) -> OptunaSearcher:
    """The Tune searcher for Optuna TPE or NSGA-II (population `population`) under `budget`."""
    return OptunaSearcher(algorithm, table, budget, seed, population)

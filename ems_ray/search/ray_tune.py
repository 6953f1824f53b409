"""Ray Tune adapters: the evolution and random search as `Searcher`s, the scoring trainable, Optuna
TPE/NSGA-II.

One trial = one candidate. A trial's config holds one categorical choice index per gene column
(`gene_names`: `depth0`, ..., `b00_kernel`, `b00_mid`, ...), so the evolution, Optuna and Tune's
own views all see the same space, and the trainable reports that candidate's `accuracy`,
`latency_ms`, `energy_mj`, `macs`, `bitops` and `within_budget`. Scoring takes microseconds and
Tune's controller 0.25-0.4 s per trial on a 2-core machine (docs/BENCHMARKS.md), so a Tune
search is for inspection, distribution and comparison at small budgets; the paper's 50,000 candidates run in the local
driver (`run_local_evolution`), which drives the same `Evolution` object in batches.
"""
from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.search import Searcher

from ems_ray.artifacts import write_atomic
from ems_ray.errors import InputError
from ems_ray.space import Genome

from ._evolution import Evolution
from ._local import SearchResult, make_evolution
from ._random import RandomSearch
from ._scoring import (
    CandidateScorer,
    InfeasibleBudgetError,
    check_feasible,
    gene_names,
    pareto_front,
    within,
)
from .config import ALGORITHMS, Budget, EvolutionConfig

if TYPE_CHECKING:
    from ray.tune import ResultGrid

    from ems_ray.hardware import CostTable

METRIC, MODE = "accuracy", "max"


def param_space(genome: Genome) -> dict[str, Any]:
    """Tune's parameter space: a categorical choice of index per gene column."""
    from ray import tune

    return {name: tune.choice(list(range(int(n)))) for name, n in zip(gene_names(genome), genome.choice_counts)}


def config_to_genes(config: dict, names: list[str]) -> np.ndarray:
    return np.asarray([int(config[n]) for n in names], dtype=np.int16)


def score_trainable(config: dict, *, scorer: CandidateScorer, budget: Budget | None = None) -> dict:
    """Function trainable: score the one candidate in `config` (predictor + LUT), one report.
    `scored_at` (wall time) orders the candidates as they were scored: Tune's result lists do not
    keep the order trials were created in."""
    names = gene_names(Genome(scorer.space))
    return {**scorer.score_one(config_to_genes(config, names), budget), "scored_at": time.time()}


class _GeneSearcher(Searcher):
    """What the gene-row searchers share: one config key per gene column, state tied to a budget, and
    `save`/`restore` as a pickle of `get_state()` (Tune calls them at each experiment checkpoint, so
    `Tuner.restore` resumes the search where the last checkpoint left it).

    Tune also pickles the searcher object itself (the Tuner state), so a searcher holds only plain
    data, the cost table and its own objects: nothing whose pickling a library may change."""

    def __init__(self, table: CostTable, budget: Budget, metric: str = METRIC, mode: str = MODE):
        super().__init__(metric=metric, mode=mode)
        self.table = table
        self.budget = budget
        self.genome = Genome(table.space)
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
                 metric: str = METRIC, mode: str = MODE):
        super().__init__(table, budget, metric, mode)
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
                 mode: str = MODE, max_resample_rounds: int = 200):
        super().__init__(table, budget, metric, mode)
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
            self._study = optuna.create_study(directions=directions, sampler=self._sampler(0))
            for event, number, data in self._log:
                if event == "tell":
                    self._tell(number, data)
                    continue
                if self.algorithm == "tpe":  # TPE keeps no state beyond the trials: fix the params
                    self._study.enqueue_trial(data)
                if self._ask(number) != data:
                    raise InputError(f"the {self.algorithm} searcher's saved log does not replay with Optuna "
                                     f"{optuna.__version__} (trial {number} differs): resume with the Optuna "
                                     "version that started the search, or start it anew in another folder")
        return self._study

    def _ask(self, number: int) -> dict[str, int]:
        study = self._study
        study.sampler = self._sampler(number)
        trial = study.ask(self.distributions)
        if trial.number != number:
            raise RuntimeError(f"Optuna numbered trial {number} as {trial.number}: the searcher's log is out of step")
        params = {name: int(trial.params[name]) for name in self.names}
        genes = np.asarray(list(params.values()), dtype=np.int16)
        for key, value in budget_constraints(self.table, self.budget, genes).items():
            trial.set_constraint(key, value)
        return params

    def _tell(self, number: int, values: list[float] | None) -> None:
        from optuna.trial import TrialState

        self._study.sampler = self._sampler(number)
        if values is None:
            self._study.tell(number, state=TrialState.FAIL)
        else:
            self._study.tell(number, values)

    # --- Tune's Searcher interface ----------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict:
        self.study  # noqa: B018 - rebuild after a restore before asking anew
        number = self._asked
        params = self._ask(number)
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
        self.study  # noqa: B018
        self._tell(number, told)
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


def make_searcher(algorithm: str, table: CostTable, budget: Budget, evolution: EvolutionConfig | None = None,
                  num_samples: int = 100, seed: int = 0) -> tuple[Searcher, int]:
    """The Tune searcher of `algorithm` and the number of candidates (trials) it scores.

    Evolution scores `population + (generations - 1) * children` (the initial population, then
    the children of each later generation); random and Optuna `num_samples`. Random search takes
    `max_resample_rounds` from `evolution`, as the local driver does, and NSGA-II its population."""
    if algorithm == "evolution":
        evolution = evolution or EvolutionConfig()
        return (EvolutionSearcher(table, budget, evolution, seed),
                evolution.population + (evolution.generations - 1) * evolution.children)
    if algorithm == "random":
        rounds = (evolution or EvolutionConfig()).max_resample_rounds
        return RandomSearcher(table, budget, num_samples, seed, max_resample_rounds=rounds), num_samples
    if algorithm in OPTUNA_ALGORITHMS:
        population = (evolution or EvolutionConfig()).population
        return optuna_searcher(algorithm, table, budget, seed, population), num_samples
    raise InputError(f"algorithm: '{algorithm}' not allowed; allowed values: {list(ALGORITHMS)}")


def fit_tune(scorer: CandidateScorer, budget: Budget, algorithm: str = "evolution",
             evolution: EvolutionConfig | None = None, num_samples: int = 100, seed: int = 0,
             storage: str | Path | None = None, name: str = "search", max_concurrent: int = 1,
             callbacks: list | None = None) -> tuple[ResultGrid, bool]:
    """Run the search as a Tune experiment `storage/name`: (results, whether any trial ran now).

    An experiment already there is resumed with `Tuner.restore` (its searcher state included), or,
    when every one of its candidates has a score, only read back. `callbacks` (e.g. Tune's loggers)
    go to the `RunConfig` of a new experiment; a restored one keeps its own. Needs Ray."""
    from ray import tune

    search_alg, trials = make_searcher(algorithm, scorer.table, budget, evolution, num_samples, seed)
    trainable = tune.with_resources(tune.with_parameters(score_trainable, scorer=scorer, budget=budget),
                                    {"cpu": 0.01})
    space = param_space(Genome(scorer.space))
    path = str(Path(storage).resolve() / name) if storage else None
    if path and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_errored=True, param_space=space)
        done = tuner.get_results()
        if len(done) >= trials and not done.errors and all(r.metrics and METRIC in r.metrics for r in done):
            return done, False
    else:
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=trials, reuse_actors=True,
                                        max_concurrent_trials=max_concurrent,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=name, storage_path=str(Path(storage).resolve()) if storage else None,
                                      verbose=0, callbacks=callbacks),
        )
    return tuner.fit(), True


def scored_trials(results: ResultGrid, genome: Genome) -> tuple[list[dict], np.ndarray]:
    """(metrics, gene rows) of the trials that reported a score, in the order they were scored."""
    names = gene_names(genome)
    done = sorted((r for r in results if r.error is None and r.metrics and METRIC in r.metrics),
                  key=lambda r: r.metrics.get("scored_at", 0.0))
    genes = np.asarray([config_to_genes(r.config, names) for r in done], dtype=np.int16).reshape(len(done), -1)
    return [r.metrics for r in done], genes


def run_tune_search(scorer: CandidateScorer, budget: Budget, algorithm: str = "evolution",
                    evolution: EvolutionConfig | None = None, num_samples: int = 100, seed: int = 0,
                    storage: str | Path | None = None, name: str = "search", max_concurrent: int = 1,
                    check: bool = True) -> SearchResult:
    """Run (or resume, when `storage/name` holds an unfinished run) a Tune search; needs Ray.

    The best is the most accurate candidate within the budget."""
    if check:
        check_feasible(scorer.table, budget)
    t0 = time.perf_counter()
    results, _ = fit_tune(scorer, budget, algorithm, evolution, num_samples, seed, storage, name, max_concurrent)
    seconds = time.perf_counter() - t0
    metrics, genes = scored_trials(results, Genome(scorer.space))
    feasible = [i for i, m in enumerate(metrics) if m.get("within_budget")]
    if not feasible:
        raise InfeasibleBudgetError(f"no trial within budget {budget.describe()} finished ({len(results)} trials)")
    best = max(feasible, key=lambda i: metrics[i][METRIC])
    history = np.maximum.accumulate([m[METRIC] if m.get("within_budget") else -np.inf for m in metrics])
    extra = {"tune_path": results.experiment_path, "trials": len(results)}
    if algorithm == "nsga2":
        cost = next(iter(budget.limits()))
        acc, costs = (np.asarray([metrics[i][key] for i in feasible]) for key in (METRIC, cost))
        extra["pareto_front"] = [[float(acc[j]), float(costs[j])] for j in pareto_front(acc, costs)]
    return SearchResult(algorithm, budget, genes[best], scorer.score_one(genes[best]), len(metrics), seconds,
                        [float(h) for h in history], extra)


def _trial_name(trial) -> str:
    # Tune's default names spell out the config: over a hundred genes exceed file-name limits
    return f"candidate_{trial.trial_id}"


__all__ = ["EvolutionSearcher", "RandomSearcher", "budget_constraints", "fit_tune", "make_evolution",
           "make_searcher", "OptunaSearcher", "optuna_searcher", "param_space", "run_tune_search", "score_trainable", "scored_trials"]

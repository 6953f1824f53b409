"""Ray Tune adapters: the evolution as a `Searcher`, the scoring trainable, Optuna TPE/NSGA-II.

One trial = one candidate. A trial's config holds one categorical choice index per gene column
(`gene_names`: `depth0`, ..., `b00_kernel`, `b00_mid`, ...), so the evolution, Optuna and Tune's
own views all see the same space, and the trainable reports that candidate's `accuracy`,
`latency_ms`, `energy_mj`, `macs`, `bitops` and `within_budget`. Scoring takes microseconds and
Tune's controller about 0.4 s per trial on this machine, so a Tune search is for inspection,
distribution and comparison at small budgets; the paper's 50,000 candidates run in the local
driver (`run_local_evolution`), which drives the same `Evolution` object in batches.
"""
from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.search import Searcher

from ems_ray.space import Genome

from ._evolution import Evolution
from ._local import SearchResult, make_evolution
from ._scoring import CandidateScorer, check_feasible, gene_names, within
from .config import Budget, EvolutionConfig

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable

METRIC, MODE = "accuracy", "max"


def param_space(genome: Genome) -> dict[str, Any]:
    """Tune's parameter space: a categorical choice of index per gene column."""
    from ray import tune

    return {name: tune.choice(list(range(int(n)))) for name, n in zip(gene_names(genome), genome.choice_counts)}


def config_to_genes(config: dict, names: list[str]) -> np.ndarray:
    return np.asarray([int(config[n]) for n in names], dtype=np.int16)


def score_trainable(config: dict, *, scorer: CandidateScorer, budget: Budget | None = None) -> dict:
    """Function trainable: score the one candidate in `config` (predictor + LUT), one report."""
    names = gene_names(Genome(scorer.space))
    return scorer.score_one(config_to_genes(config, names), budget)


class EvolutionSearcher(Searcher):
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
        super().__init__(metric=metric, mode=mode)
        self.budget = budget
        self.genome = Genome(table.space)
        self.names = gene_names(self.genome)
        self.evolution = Evolution(self.genome, config or EvolutionConfig(),
                                   lambda genes: within(table.score(genes), budget), seed)
        self._handed = 0  # candidates of the pending generation handed out
        self._trials: dict[str, tuple[int, int]] = {}  # trial id -> (generation, row)
        self._scores: dict[int, float] = {}  # row -> fitness, pending generation

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

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
        return {name: int(v) for name, v in zip(self.names, genes[row])}

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
        return {"evolution": self.evolution.get_state(), "handed": self._handed, "trials": dict(self._trials),
                "scores": dict(self._scores), "metric": self._metric, "mode": self._mode,
                "budget": self.budget.model_dump()}

    def set_state(self, state: dict) -> None:
        if Budget(**state["budget"]) != self.budget:
            raise ValueError(f"searcher state was saved for budget {Budget(**state['budget']).describe()}, "
                             f"not {self.budget.describe()}")
        self.evolution.set_state(state["evolution"])
        self._handed, self._trials, self._scores = state["handed"], dict(state["trials"]), dict(state["scores"])
        self._metric, self._mode = state["metric"], state["mode"]

    def save(self, checkpoint_path: str) -> None:
        tmp = f"{checkpoint_path}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(self.get_state(), f)
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


def budget_constraints(table: CostTable, budget: Budget, genes: np.ndarray) -> dict[str, float]:
    """Optuna constraint values of one row: cost minus limit per bounded cost (feasible: all <= 0)."""
    costs = table.score(np.asarray(genes)[None, :])
    return {key: float(costs[key][0] - limit) for key, limit in budget.limits().items()}


def optuna_searcher(algorithm: str, table: CostTable, budget: Budget, seed: int = 0):
    """`OptunaSearch` with TPE (objective: accuracy) or NSGA-II (objectives: accuracy and the
    budget's first cost); both see the budget as Optuna constraints, set on each trial from the LUT
    before it is told (TPE models feasible trials apart; NSGA-II uses constrained domination)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    names = gene_names(Genome(table.space))

    class BudgetOptunaSearch(OptunaSearch):
        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            trial = self._ot_trials.get(trial_id)
            if trial is not None and trial_id not in self._completed_trials:
                for key, value in budget_constraints(table, budget, config_to_genes(trial.params, names)).items():
                    trial.set_constraint(key, value)
            super().on_trial_complete(trial_id, result, error)

    if algorithm == "tpe":
        return BudgetOptunaSearch(metric=METRIC, mode=MODE, sampler=optuna.samplers.TPESampler(seed=seed))
    if algorithm == "nsga2":
        cost = next(iter(budget.limits()))
        return BudgetOptunaSearch(metric=[METRIC, cost], mode=[MODE, "min"],
                                  sampler=optuna.samplers.NSGAIISampler(seed=seed))
    raise ValueError(f"algorithm: '{algorithm}' not allowed; allowed values: ['evolution', 'tpe', 'nsga2']")


def run_tune_search(scorer: CandidateScorer, budget: Budget, algorithm: str = "evolution",
                    evolution: EvolutionConfig | None = None, num_samples: int = 100, seed: int = 0,
                    storage: str | Path | None = None, name: str = "search", max_concurrent: int = 8,
                    check: bool = True) -> SearchResult:
    """Run (or resume, when `storage/name` holds an unfinished run) a Tune search; needs Ray.

    Evolution scores `evolution.population * evolution.generations` candidates (initial population
    and children are both `population` large in the paper's setting); Optuna `num_samples`. The best
    is the most accurate candidate within the budget."""
    from ray import tune

    if check:
        check_feasible(scorer.table, budget)
    evolution = evolution or EvolutionConfig()
    genome = Genome(scorer.space)
    trainable = tune.with_parameters(score_trainable, scorer=scorer, budget=budget)
    trainable = tune.with_resources(trainable, {"cpu": 0.01})
    if algorithm == "evolution":
        search_alg = EvolutionSearcher(scorer.table, budget, evolution, seed)
        num_samples = evolution.population + (evolution.generations - 1) * evolution.children
    else:
        search_alg = optuna_searcher(algorithm, scorer.table, budget, seed)
    t0 = time.perf_counter()
    path = str(Path(storage).resolve() / name) if storage else None
    if path and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_errored=True, param_space=param_space(genome))
    else:
        tuner = tune.Tuner(
            trainable, param_space=param_space(genome),
            tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=num_samples, reuse_actors=True,
                                        max_concurrent_trials=max_concurrent,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=name, storage_path=str(Path(storage).resolve()) if storage else None,
                                      verbose=0),
        )
    results = tuner.fit()
    seconds = time.perf_counter() - t0
    names = gene_names(genome)
    rows = [(r.metrics, config_to_genes(r.config, names)) for r in results
            if r.error is None and r.metrics and METRIC in r.metrics]
    feasible = [(m, g) for m, g in rows if m.get("within_budget")]
    if not feasible:
        raise RuntimeError(f"no trial within budget {budget.describe()} finished ({len(results)} trials)")
    best_metrics, best_genes = max(feasible, key=lambda mg: mg[0][METRIC])
    history = list(np.maximum.accumulate([m[METRIC] if m.get("within_budget") else -np.inf for m, _ in rows]))
    extra = {"tune_path": results.experiment_path, "trials": len(results)}
    if algorithm == "nsga2":
        cost = next(iter(budget.limits()))
        extra["pareto_front"] = _front([(m[METRIC], m[cost]) for m, _ in feasible])
    return SearchResult(algorithm, budget, best_genes, scorer.score_one(best_genes), len(rows), seconds,
                        [float(h) for h in history], extra)


def _trial_name(trial) -> str:
    # Tune's default names spell out the config: over a hundred genes exceed file-name limits
    return f"candidate_{trial.trial_id}"


def _front(points: list[tuple[float, float]]) -> list[list[float]]:
    """Non-dominated (accuracy max, cost min) points, by increasing cost."""
    front, best = [], -np.inf
    for acc, cost in sorted(points, key=lambda p: (p[1], -p[0])):
        if acc > best:
            front.append([acc, cost])
            best = acc
    return front


__all__ = ["EvolutionSearcher", "budget_constraints", "make_evolution", "optuna_searcher", "param_space",
           "run_tune_search", "score_trainable"]

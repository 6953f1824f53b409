"""Running a search as a Ray Tune experiment: the scoring trainable, the searcher of each
algorithm, new or restored experiments, and the scored candidates read back in order.

One trial = one candidate: the trainable reports that candidate's `accuracy`, `latency_ms`,
`energy_mj`, `macs`, `bitops` and `within_budget`. Scoring takes microseconds and Tune's controller
0.25-0.4 s per trial on a 2-core machine (docs/BENCHMARKS.md), so a Tune search is for inspection,
distribution and comparison at small budgets; the paper's 50,000 candidates run in the local
driver (`run_local_evolution`), which drives the same `Evolution` object in batches.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ray.tune.search import Searcher

from ems_ray.errors import InputError
from ems_ray.space import Genome

from .._local import SearchResult
from .._scoring import CandidateScorer, InfeasibleBudgetError, check_feasible, gene_names, pareto_front
from ..config import ALGORITHMS, Budget, EvolutionConfig
from .optuna_searchers import OPTUNA_ALGORITHMS, optuna_searcher
from .searchers import METRIC, EvolutionSearcher, RandomSearcher, config_to_genes, param_space

if TYPE_CHECKING:
    from ray.tune import ResultGrid

    from ems_ray.hardware import CostTable


def score_trainable(config: dict, *, scorer: CandidateScorer, budget: Budget | None = None) -> dict:
    """Function trainable: score the one candidate in `config` (predictor + LUT), one report.
    `scored_at` (wall time) orders the candidates as they were scored: Tune's result lists do not
    keep the order trials were created in."""
    names = gene_names(Genome(scorer.space))
    return {**scorer.score_one(config_to_genes(config, names), budget), "scored_at": time.time()}


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

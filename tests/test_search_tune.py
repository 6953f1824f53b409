"""Search under Ray Tune (shared `ray_local`): evolution equal to the local driver, Optuna TPE/NSGA-II."""
from __future__ import annotations

import numpy as np
import pytest

from ems_ray.search import EvolutionConfig, run_local_evolution
from ems_ray.space import Genome, load_preset

SPACE = load_preset("fmnist-small")
GENOME = Genome(SPACE)
# Tune's controller sets the pace (0.25-0.4 s per trial, more on a loaded machine): 12 trials
TINY = EvolutionConfig(population=4, parents=2, mutations=2, crossovers=2, generations=3)


def test_evolution_through_tune_equals_local_driver(ray_local, scorer, budget, tmp_path):
    from ems_ray.search.tune import run_tune_search

    local = run_local_evolution(scorer, budget, TINY, seed=7)
    tuned = run_tune_search(scorer, budget, "evolution", TINY, seed=7, storage=tmp_path, name="evo")
    assert tuned.scored == 12
    assert np.array_equal(tuned.genes, local.genes)
    assert tuned.scores["accuracy"] == pytest.approx(local.scores["accuracy"])


@pytest.mark.parametrize("algorithm", ["tpe", "nsga2"])
def test_optuna_searchers_run_under_tune(ray_local, scorer, budget, tmp_path, algorithm):
    from ems_ray.search.tune import run_tune_search

    result = run_tune_search(scorer, budget, algorithm, num_samples=5, seed=0, storage=tmp_path, name=algorithm)
    assert result.scored == 5
    assert result.scores["latency_ms"] <= budget.latency_ms
    if algorithm == "nsga2":
        front = result.extra["pareto_front"]
        assert front and all(b[0] > a[0] and b[1] >= a[1] for a, b in zip(front, front[1:]))


def test_optuna_trials_carry_the_budget_as_constraints(scorer, budget):
    from ems_ray.search.tune import METRIC, MODE, config_to_genes, optuna_searcher, param_space
    from ems_ray.search import gene_names

    searcher = optuna_searcher("tpe", scorer.table, budget, seed=0)
    assert searcher.set_search_properties(METRIC, MODE, param_space(GENOME))
    config = searcher.suggest("a")
    genes = config_to_genes(config, gene_names(GENOME))
    searcher.on_trial_complete("a", scorer.score_one(genes, budget))
    (trial,) = searcher.study.trials
    latency = scorer.costs(genes[None])["latency_ms"][0]
    assert trial.constraints == {"latency_ms": pytest.approx(latency - budget.latency_ms)}

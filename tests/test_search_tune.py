"""Search under Ray Tune (shared `ray_local`): evolution equal to the local driver, Optuna TPE/NSGA-II."""
from __future__ import annotations

import numpy as np
import pytest

from ems_ray.search import EvolutionConfig, run_local_evolution
from ems_ray.space import Genome, load_preset

SPACE = load_preset("fmnist-small")
GENOME = Genome(SPACE)
# one trial per generation: 3 trials of 4 candidates
TINY = EvolutionConfig(population=4, parents=2, mutations=2, crossovers=2, generations=3)


@pytest.mark.parametrize("batch, trials", [(4, 3), (8, 2), (None, 1)])
def test_evolution_through_tune_equals_local_driver(ray_local, scorer, budget, tmp_path, batch, trials):
    from ems_ray.search.tune import run_tune_search

    local = run_local_evolution(scorer, budget, TINY, seed=7)
    tuned = run_tune_search(scorer, budget, "evolution", TINY, seed=7, storage=tmp_path, name="evo", batch=batch)
    # one trial per generation (batch 4, the population), two per trial, or all three in one
    assert tuned.scored == 12 and tuned.extra["trials"] == trials
    assert np.array_equal(tuned.genes, local.genes)
    assert tuned.scores["accuracy"] == pytest.approx(local.scores["accuracy"])
    assert tuned.history == pytest.approx(list(np.maximum.accumulate(_local_scores(scorer, budget))))


def _local_scores(scorer, budget) -> np.ndarray:
    """Every candidate's within-budget accuracy (-inf above the budget), in the local driver's order."""
    from ems_ray.search._local import make_evolution
    from ems_ray.search._scoring import within

    evo, scores = make_evolution(scorer, budget, TINY, seed=7), []
    while not evo.done:
        rows = evo.ask()
        accuracy = scorer.accuracy(rows)
        evo.tell(rows, accuracy)
        scores.append(np.where(within(scorer.costs(rows), budget), accuracy, -np.inf))
    return np.concatenate(scores)


@pytest.mark.parametrize("algorithm", ["tpe", "nsga2"])
def test_optuna_searchers_run_under_tune(ray_local, scorer, budget, tmp_path, algorithm):
    from ems_ray.search.tune import run_tune_search

    evolution = EvolutionConfig(population=4, parents=2)  # NSGA-II's population: one generation per trial
    result = run_tune_search(scorer, budget, algorithm, evolution, num_samples=10, seed=0, storage=tmp_path,
                             name=algorithm, batch=5)
    assert result.scored == 10 and result.extra["trials"] == (2 if algorithm == "tpe" else 3)
    assert result.scores["latency_ms"] <= budget.latency_ms
    if algorithm == "nsga2":
        front = result.extra["pareto_front"]
        assert front and all(b[0] > a[0] and b[1] >= a[1] for a, b in zip(front, front[1:]))


def test_optuna_trials_carry_the_budget_as_constraints(scorer, budget):
    from ems_ray.search.tune import SCORES, batch_genes, optuna_searcher

    searcher = optuna_searcher("tpe", scorer.table, budget, seed=0, samples=6, batch=3)
    genes = batch_genes(searcher.suggest("a"))
    assert genes.shape == (3, GENOME.width)
    assert len(searcher.study.trials) == 3  # three asks, all running: constant liar spreads them
    searcher.on_trial_complete("a", {SCORES: list(scorer.accuracy(genes))})
    latency = scorer.costs(genes)["latency_ms"]
    for trial, lat in zip(searcher.study.trials, latency):
        assert trial.constraints == {"latency_ms": pytest.approx(lat - budget.latency_ms)}
        assert trial.state.name == "COMPLETE"

"""Every searcher Tune pickles survives pickling and `save`/`restore`, and then asks exactly what
the uninterrupted searcher asks (Tune pickles the searcher into the Tuner state and restores it
from its checkpoint; a library object inside must not decide whether that works)."""
from __future__ import annotations

import pickle

import pytest

from ems_ray.search import ALGORITHMS, EvolutionConfig
from ems_ray.search.tune import METRIC, MODE, SCORES, batch_genes, make_searcher

TINY = EvolutionConfig(population=4, parents=2, mutations=2, crossovers=2, generations=4)


def _fresh(algorithm, scorer, budget):
    searcher, _ = make_searcher(algorithm, scorer.table, budget, TINY, num_samples=40, seed=5, batch=3)
    assert searcher.set_search_properties(METRIC, MODE, {})
    return searcher


def _drive(searchers, scorer, ids, complete) -> dict:
    """Ask each searcher for `ids`, then report `complete` of them; all must agree throughout.
    Returns the configs (batches) handed out."""
    asked = {}
    for trial_id in ids:
        configs = [s.suggest(trial_id) for s in searchers]
        assert all(c == configs[0] for c in configs), f"{trial_id}: searchers diverged"
        asked[trial_id] = configs[0]
        if trial_id in complete and isinstance(configs[0], dict):
            result = {SCORES: list(scorer.accuracy(batch_genes(configs[0])))}
            for s in searchers:
                s.on_trial_complete(trial_id, dict(result))
    return asked


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_searcher_pickles_and_restores_exactly(algorithm, scorer, budget, tmp_path):
    original = _fresh(algorithm, scorer, budget)
    # 6 asked, 5 told: the restore happens with a batch in flight, as after an interrupted run
    first = [f"t{i}" for i in range(6)]
    asked = _drive([original], scorer, first, set(first) - {"t2"})
    assert isinstance(asked["t2"], dict)

    unpickled = pickle.loads(pickle.dumps(original))
    restored = _fresh(algorithm, scorer, budget)
    original.save(str(tmp_path / "searcher.pkl"))
    restored.restore(str(tmp_path / "searcher.pkl"))

    searchers = [original, unpickled, restored]
    # the batch in flight finishes after the restore, then the search goes on
    for s in searchers:
        s.on_trial_complete("t2", {SCORES: [0.5] * len(batch_genes(asked["t2"]))})
    later = [f"u{i}" for i in range(14)]
    _drive(searchers, scorer, later, set(later))


def test_searcher_state_is_refused_for_another_budget(scorer, budget, tmp_path):
    from ems_ray.errors import InputError
    from ems_ray.search import Budget

    searcher = _fresh("nsga2", scorer, budget)
    searcher.save(str(tmp_path / "s.pkl"))
    other, _ = make_searcher("nsga2", scorer.table, Budget(latency_ms=budget.latency_ms * 2), TINY, 40, seed=5)
    with pytest.raises(InputError, match="saved for budget"):
        other.restore(str(tmp_path / "s.pkl"))


def test_predictor_tune_searcher_pickles():
    """The predictor stage's Tune searcher (Ray's OptunaSearch over TPE) pickles too."""
    from ray.tune.search.optuna import OptunaSearch

    pickle.loads(pickle.dumps(OptunaSearch(seed=0)))

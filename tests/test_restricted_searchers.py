"""Every searcher respects a restriction through the genome it is given: with the bit genes frozen
at a base row, no candidate of the evolution or of random search (local, or as Tune searchers)
changes them."""
from __future__ import annotations

import numpy as np
import pytest

from ems_ray.search import EvolutionConfig, RandomSearch, RestrictedGenome, within
from ems_ray.search._evolution import Evolution
from ems_ray.search.tune import SCORES, EvolutionSearcher, RandomSearcher, batch_genes
from ems_ray.space import Genome

TINY = EvolutionConfig(population=8, parents=4, mutations=4, crossovers=4, generations=4)


@pytest.fixture(scope="module")
def restricted(scorer):
    genome = Genome(scorer.space)
    return RestrictedGenome(genome, genome.largest(bits=6)[0], free=("depth", "kernel", "mid"))


def _frozen_kept(rg: RestrictedGenome, rows: np.ndarray) -> bool:
    rows = np.atleast_2d(rows)
    return bool(np.array_equal(rows[:, rg.frozen], np.broadcast_to(rg.base[rg.frozen], rows[:, rg.frozen].shape)))


def _run_ask_tell(search, scorer) -> np.ndarray:
    asked = []
    while not search.done:
        genes = search.ask()
        asked.append(genes.copy())
        search.tell(genes, scorer.accuracy(genes))
    return np.concatenate(asked)


def test_local_evolution_and_random_search_keep_frozen_genes(restricted, scorer, budget):
    feasible = lambda g: within(scorer.costs(g), budget)  # noqa: E731
    for search in (Evolution(restricted, TINY, feasible, seed=3), RandomSearch(restricted, 64, feasible, seed=3)):
        rows = _run_ask_tell(search, scorer)
        assert len(rows) and _frozen_kept(restricted, rows), type(search).__name__
        assert within(scorer.costs(rows), budget).all()
        assert len({r.tobytes() for r in rows}) > 1  # the free genes moved


@pytest.mark.parametrize("make", [
    lambda t, b, g: EvolutionSearcher(t, b, TINY, seed=3, genome=g),
    lambda t, b, g: RandomSearcher(t, b, 40, seed=3, genome=g, batch=8),
], ids=["evolution", "random"])
def test_tune_searchers_keep_frozen_genes(make, restricted, scorer, budget):
    searcher = make(scorer.table, budget, restricted)
    rows = []
    for i in range(10):
        config = searcher.suggest(f"t{i}")
        if not isinstance(config, dict):
            break
        genes = batch_genes(config)
        rows.append(genes)
        searcher.on_trial_complete(f"t{i}", {SCORES: list(scorer.accuracy(genes))})
    rows = np.concatenate(rows)
    assert len(rows) >= 32 and _frozen_kept(restricted, rows)

"""Search without Ray: budgets, cheapest costs, the evolution, the searcher's state, the local driver."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ems_ray.hardware import build_lut
from ems_ray.search import (
    Budget, CandidateScorer, EvolutionConfig, InfeasibleBudgetError, SearchConfig, SyntheticPredictor,
    check_feasible, cheapest_costs, make_evolution, run_local_evolution, save_result, within,
)
from ems_ray.space import Genome, SubnetConfig, load_preset

from tiny_configs import tiny_predictor_run

SPACE = load_preset("fmnist-small")
GENOME = Genome(SPACE)
TINY = EvolutionConfig(population=8, parents=3, mutations=4, crossovers=4, generations=3)


@pytest.fixture(scope="module")
def table():
    return build_lut(SPACE)


@pytest.fixture(scope="module")
def scorer(table):
    return CandidateScorer(SyntheticPredictor(SPACE), table)


@pytest.fixture(scope="module")
def budget(table):
    lat = table.score(GENOME.sample(np.random.default_rng(0), 400))["latency_ms"]
    return Budget(latency_ms=float(np.quantile(lat, 0.3)))


# ----- budgets -------------------------------------------------------------------------------------
def test_budget_parse_units_and_round_trip():
    b = Budget.parse("latency=8.5ms, energy=12mJ,bitops=20G")
    assert b.limits() == {"latency_ms": 8.5, "energy_mj": 12.0, "bitops": 20e9}
    assert Budget.parse(b.describe()) == b
    assert b.slug() == "latency-8.5ms_energy-12mJ_bitops-20G"
    assert Budget.parse("bitops=1.5e10").bitops == 15e9  # a bare number is in the LUT's unit (BitOps)


@pytest.mark.parametrize("text, words", [
    ("latency=8.5s", "in ms"), ("speed=3ms", "cannot read"), ("", "empty"), ("latency=-1ms", "positive finite"),
    ("latency=1ms,latency=2ms", "twice"), ("latency=0ms", "positive finite"),
])
def test_budget_parse_errors(text, words):
    with pytest.raises(ValueError, match=words):
        Budget.parse(text)


def test_search_config_rejects_bad_budget_and_sizes():
    with pytest.raises(ValueError, match="cannot read"):
        SearchConfig(budget="latency=fast")
    with pytest.raises(ValueError, match="parents"):
        EvolutionConfig(population=4, parents=5)


def test_cheapest_costs_are_lower_bounds_reached_by_the_smallest_subnet(table):
    cheapest = cheapest_costs(table)
    sampled = table.score(GENOME.sample(np.random.default_rng(1), 2000))
    for key, value in cheapest.items():
        assert value <= sampled[key].min() + 1e-12
    smallest = table.score(GENOME.smallest())
    assert cheapest["latency_ms"] == pytest.approx(smallest["latency_ms"][0])
    assert cheapest["bitops"] == smallest["bitops"][0]


def test_infeasible_budget_names_the_cheapest_cost(table, scorer):
    low = cheapest_costs(table)["latency_ms"]
    with pytest.raises(InfeasibleBudgetError, match=rf"cheapest possible {low:.4g} ms"):
        check_feasible(table, Budget(latency_ms=low * 0.9))
    with pytest.raises(InfeasibleBudgetError, match="energy budget"):
        run_local_evolution(scorer, Budget(energy_mj=1e-6), TINY)
    check_feasible(table, Budget(latency_ms=low * 1.01))


# ----- evolution -----------------------------------------------------------------------------------
def test_every_candidate_is_valid_and_within_budget(scorer, budget):
    evo = make_evolution(scorer, budget, TINY, seed=0)
    sizes = []
    while not evo.done:
        genes = evo.ask()
        assert np.all((genes >= 0) & (genes < GENOME.choice_counts))
        assert within(scorer.costs(genes), budget).all()
        sizes.append(len(genes))
        assert len(evo.ask()) == 0  # nothing more until the generation is told
        evo.tell(genes, scorer.accuracy(genes))
    assert sizes == [8, 8, 8] and evo.scored == 24 and len(evo.population) == 8
    assert all(b >= a for a, b in zip(evo.history, evo.history[1:]))  # elitist


def test_local_driver_is_deterministic_by_seed(scorer, budget):
    a = run_local_evolution(scorer, budget, TINY, seed=3)
    b = run_local_evolution(scorer, budget, TINY, seed=3)
    c = run_local_evolution(scorer, budget, TINY, seed=4)
    assert np.array_equal(a.genes, b.genes) and a.history == b.history
    assert a.history != c.history or not np.array_equal(a.genes, c.genes)
    assert a.scores["latency_ms"] <= budget.latency_ms and a.scored == 24


def test_local_driver_improves_on_random_sampling(scorer, budget):
    cfg = EvolutionConfig(population=40, parents=10, mutations=20, crossovers=20, generations=15)
    result = run_local_evolution(scorer, budget, cfg, seed=0)
    rng_rows = GENOME.sample(np.random.default_rng(0), 4000)
    rows = rng_rows[within(scorer.costs(rng_rows), budget)][: result.scored]
    assert result.scores["accuracy"] >= scorer.accuracy(rows).max()


def test_tight_budget_still_fills_the_initial_population(table, scorer):
    # far tighter than uniform sampling can meet: the shrunk half of the sampler reaches it
    budget = Budget(latency_ms=cheapest_costs(table)["latency_ms"] * 1.5)
    result = run_local_evolution(scorer, budget, TINY, seed=0)
    assert result.scores["latency_ms"] <= budget.latency_ms


# ----- the Tune searcher, driven by hand -----------------------------------------------------------
def _drive(searcher, scorer, start: int = 0, stop_after: int | None = None, reverse: bool = True) -> int:
    """Suggest until the searcher waits or finishes, complete trials in reverse order; like Tune.
    Each trial is a batch: its scores, one per row, are what the trainable reports."""
    from ray.tune.search import Searcher

    from ems_ray.search.tune import SCORES, batch_genes

    n = start
    while True:
        open_trials = {}
        while (cfg := searcher.suggest(f"t{n}")) not in (None, Searcher.FINISHED):
            open_trials[f"t{n}"] = cfg
            n += 1
        if not open_trials:
            return n
        for tid in sorted(open_trials, reverse=reverse):
            genes = batch_genes(open_trials[tid])
            searcher.on_trial_complete(tid, {SCORES: list(scorer.accuracy(genes))})
        if stop_after is not None and n >= stop_after:
            return n


def test_searcher_matches_local_driver_and_resumes_from_save(table, scorer, budget, tmp_path):
    from ems_ray.search.tune import SCORES, EvolutionSearcher

    local = run_local_evolution(scorer, budget, TINY, seed=5)
    whole = EvolutionSearcher(table, budget, TINY, seed=5)
    assert _drive(whole, scorer) == TINY.generations  # one trial per generation
    assert np.array_equal(whole.best()[0], local.genes) and whole.evolution.history == local.history

    first = EvolutionSearcher(table, budget, TINY, seed=5)
    n = _drive(first, scorer, stop_after=1)
    assert first.suggest(f"t{n}") is not None  # one generation in flight when interrupted
    first.save(str(tmp_path / "searcher.pkl"))
    resumed = EvolutionSearcher(table, budget, TINY, seed=5)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    genes = resumed._live[f"t{n}"][1]
    resumed.on_trial_complete(f"t{n}", {SCORES: list(scorer.accuracy(genes))})  # Tune re-runs it
    _drive(resumed, scorer, start=n + 1, reverse=False)
    assert np.array_equal(resumed.best()[0], local.genes) and resumed.evolution.history == local.history
    with pytest.raises(ValueError, match="budget"):
        EvolutionSearcher(table, Budget(latency_ms=1.0), TINY, seed=5).restore(str(tmp_path / "searcher.pkl"))


def test_errored_trials_count_as_worst(table, scorer, budget):
    from ems_ray.search.tune import EvolutionSearcher

    s = EvolutionSearcher(table, budget, TINY, seed=0)
    assert s.suggest("t0") is not None and s.suggest("t1") is None  # the generation barrier
    s.on_trial_complete("t0", None, error=True)
    assert s.evolution.generation == 1 and np.isinf(s.evolution.fitness).all()


def test_save_result_writes_a_loadable_subnet(scorer, budget, tmp_path):
    result = run_local_evolution(scorer, budget, TINY, seed=0)
    out = save_result(result, scorer, tmp_path / "search" / budget.slug())
    cfg = SubnetConfig.from_yaml(out / "best.yaml", SPACE)
    assert np.array_equal(GENOME.from_config(cfg), result.genes)
    saved = json.loads((out / "result.json").read_text())
    assert saved["budget"] == budget.describe() and saved["scored"] == 24


# ----- the stage and the command -------------------------------------------------------------------
@pytest.fixture()
def run_config(tmp_path):
    return tiny_predictor_run(tmp_path, "{evolution: {population: 8, parents: 3, mutations: 4, crossovers: 4, "
                                        "generations: 3}}")


def test_search_command_prints_and_saves_the_best_subnet(run_config, tmp_path, capsys):
    from ems_ray.cli import main

    assert main(["search", "--config", str(run_config), "--budget", "latency=0.3ms"]) == 0
    out = capsys.readouterr().out
    assert "24 candidates scored" in out and "predicted accuracy" in out and "latency" in out
    folder = tmp_path / "run" / "search" / "latency-0.3ms"
    cfg = SubnetConfig.from_yaml(folder / "best.yaml", SPACE)
    result = json.loads((folder / "result.json").read_text())
    assert np.array_equal(GENOME.from_config(cfg), result["genes"]) and result["scores"]["latency_ms"] <= 0.3


def test_search_command_rejects_an_infeasible_budget_in_one_line(run_config, capsys):
    from ems_ray.cli import main

    assert main(["search", "--config", str(run_config), "--budget", "energy=0.001mJ"]) == 2
    err = capsys.readouterr().err
    assert "cheapest possible" in err and "mJ" in err and "Traceback" not in err
    assert main(["search", "--config", str(run_config)]) == 2
    assert "no budget" in capsys.readouterr().err


def test_distinct_population_holds_distinct_networks(scorer, budget):
    """With `distinct` no network is twice in the population and proposals rarely repeat a known
    network; APQ's evolution (`distinct=False`) fills its population with copies of the best and
    spends candidates re-scoring them."""
    cfg = dict(population=20, parents=5, mutations=10, crossovers=10, generations=30)
    members, repeats = {}, {}
    for distinct in (True, False):
        evo = make_evolution(scorer, budget, EvolutionConfig(**cfg, distinct=distinct), seed=0)
        repeats[distinct] = 0
        while not evo.done:
            genes = evo.ask()
            known = {row.tobytes() for row in GENOME.canonical(evo.population)}
            for row in GENOME.canonical(genes):
                repeats[distinct] += row.tobytes() in known
                known.add(row.tobytes())
            evo.tell(genes, scorer.accuracy(genes))
            if distinct:
                assert len(np.unique(GENOME.canonical(evo.population), axis=0)) == len(evo.population)
        members[distinct] = len(np.unique(GENOME.canonical(evo.population), axis=0))
    assert members[True] == 20 and members[False] < 20
    assert repeats[True] < repeats[False] / 2

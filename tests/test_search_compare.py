"""Random search, comparing searchers (files, budgets, equal counts, reuse) and an interrupted Tune
search resumed with `Tuner.restore`. Ray tests share `ray_local`; Tune's controller sets their pace
(0.25-0.4 s per trial, more on a loaded machine), so they score a handful of candidates."""
from __future__ import annotations

import csv
import importlib.util
import math
import os
import signal

import numpy as np
import pytest

from ems_ray.search import (
    Budget, CompareConfig, EvolutionConfig, SearchConfig, cheapest_costs, make_evolution, make_random_search,
    run_local_random, within,
)
from ems_ray.search.compare import CURVE_COLUMNS, FRONT_COLUMNS, SUMMARY_COLUMNS, SearcherTrace, write_comparison
from ems_ray.space import Genome, load_preset

from tiny_configs import tiny_predictor_run

SPACE = load_preset("fmnist-small")
GENOME = Genome(SPACE)
FILES = ("summary.csv", "curves.csv", "front.csv", "curves.png", "front.png")


def _read(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----- random search -------------------------------------------------------------------------------
def test_random_search_is_within_budget_and_deterministic_by_seed(scorer, budget):
    rs = make_random_search(scorer, budget, samples=40, seed=1)
    rows = []
    while not rs.done:
        rows.append(rs.ask())
        rs.tell(rows[-1], scorer.accuracy(rows[-1]))
    rows = np.concatenate(rows)
    assert len(rows) == 40 and within(scorer.costs(rows), budget).all()
    a, b, c = (run_local_random(scorer, budget, 40, seed=s) for s in (1, 1, 2))
    assert a.scored == 40 and a.algorithm == "random"
    assert np.array_equal(a.genes, b.genes) and a.history == b.history
    assert np.array_equal(a.genes, rows[np.argmax(scorer.accuracy(rows))])
    assert not np.array_equal(a.genes, c.genes)


def test_random_searcher_draws_the_local_sequence_in_any_batches_and_resumes(scorer, budget, tmp_path):
    from ray.tune.search import Searcher

    from ems_ray.search.tune import SCORES, RandomSearcher, batch_genes

    local = make_random_search(scorer, budget, samples=30, seed=4)
    local.batch = 7  # batches of 7 locally, of 4 under Tune: the sequence must not depend on it
    chunks = []
    while not local.done:
        chunks.append(local.ask())
        local.tell(chunks[-1], np.zeros(len(chunks[-1])))
    expected = np.concatenate(chunks)

    first = RandomSearcher(scorer.table, budget, 30, seed=4, batch=4)
    configs = [first.suggest(f"t{i}") for i in range(3)]  # three batches in flight at once
    got = [batch_genes(c) for c in configs]
    first.on_trial_complete("t0", {SCORES: [0.5] * 4})
    first.save(str(tmp_path / "random.pkl"))
    resumed = RandomSearcher(scorer.table, budget, 30, seed=4, batch=4)
    resumed.restore(str(tmp_path / "random.pkl"))
    for tid in ("t1", "t2"):  # Tune re-runs the trials in flight
        resumed.on_trial_complete(tid, {SCORES: [0.5] * 4})
    i = 3
    while isinstance(config := resumed.suggest(f"t{i}"), dict):
        got.append(batch_genes(config))
        resumed.on_trial_complete(f"t{i}", {SCORES: [0.5] * len(got[-1])})
        i += 1
    assert config == Searcher.FINISHED and [len(g) for g in got] == [4] * 7 + [2]
    assert np.array_equal(np.concatenate(got), expected)
    with pytest.raises(ValueError, match="budget"):
        RandomSearcher(scorer.table, Budget(latency_ms=1.0), 30, seed=4).restore(str(tmp_path / "random.pkl"))


def test_random_search_meets_a_tight_budget(scorer):
    budget = Budget(latency_ms=cheapest_costs(scorer.table)["latency_ms"] * 1.5)
    result = run_local_random(scorer, budget, 50, seed=0)
    assert result.scored == 50 and result.scores["latency_ms"] <= budget.latency_ms


def test_random_is_an_algorithm_of_the_config():
    assert SearchConfig(algorithm="random").algorithm == "random"
    with pytest.raises(ValueError, match="'evolution', 'tpe', 'nsga2' or 'random'"):
        SearchConfig(algorithm="grid")


# ----- the comparison config and files (no Ray) ----------------------------------------------------
def test_compare_config_sizes_the_evolution_to_the_candidates(scorer, budget):
    from ems_ray.search.tune import make_searcher

    cfg = CompareConfig(candidates=40, population=8, parents=2)
    evo = cfg.evolution(EvolutionConfig(mutation_prob=0.3))
    assert (evo.generations, evo.children, evo.mutation_prob) == (5, 8, 0.3)
    trials = {"evolution": 5, "tpe": 4, "nsga2": 5, "random": 4}  # generations of 8; batches of 10
    for algorithm in ("evolution", "tpe", "nsga2", "random"):
        assert make_searcher(algorithm, scorer.table, budget, evo, cfg.candidates, batch=10)[1] == trials[algorithm]
    with pytest.raises(ValueError, match=r"candidates \(45\) must be a multiple of population \(8\).*40 or 48"):
        CompareConfig(candidates=45, population=8, parents=2)
    with pytest.raises(ValueError, match="listed twice"):
        CompareConfig(algorithms=["tpe", "tpe"])
    with pytest.raises(ValueError, match="'evolution', 'tpe', 'nsga2' or 'random'"):
        CompareConfig(algorithms=["grid"])


def test_traces_write_curves_fronts_and_summary(tmp_path):
    budget = Budget(latency_ms=1.0)
    metrics = [{"accuracy": a, "latency_ms": lat, "energy_mj": 0.1, "bitops": 1e8}
               for a, lat in [(0.9, 2.0), (0.5, 0.9), (0.7, 0.5), (0.6, 0.4), (0.8, 0.95), (0.65, 0.6)]]
    trace = SearcherTrace.from_metrics("tpe", metrics, budget, seconds=3.0)
    curve = trace.curve()
    assert math.isnan(curve[0]) and list(curve[1:]) == [0.5, 0.7, 0.7, 0.8, 0.8]  # the 0.9 is over budget
    assert [(trace.accuracy[i], trace.costs["latency_ms"][i]) for i in trace.front()] == \
        [(0.6, 0.4), (0.7, 0.5), (0.8, 0.95)]
    none = SearcherTrace.from_metrics("random", metrics[:1], budget, seconds=1.0)
    write_comparison([trace, none], tmp_path, budget)
    assert all((tmp_path / f).stat().st_size > 0 for f in FILES)
    summary = _read(tmp_path / "summary.csv")
    assert tuple(summary[0]) == SUMMARY_COLUMNS
    assert summary[0]["best_accuracy"] == "0.8" and summary[0]["candidates_per_s"] == "2.0"
    assert summary[1]["best_accuracy"] == "" and summary[1]["scored"] == "1"  # nothing within budget
    curves = _read(tmp_path / "curves.csv")
    assert tuple(curves[0]) == CURVE_COLUMNS and len(curves) == 7 and curves[0]["best_accuracy"] == ""
    assert tuple(_read(tmp_path / "front.csv")[0]) == FRONT_COLUMNS


# ----- through Ray Tune ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    """A run config with tiny untrained predictors (for the commands; the stage test passes `scorer`)."""
    return tiny_predictor_run(tmp_path_factory.mktemp("compare"),
                              "{batch: 3, compare: {candidates: 8, population: 4, parents: 2}}", hidden=8, layers=1)


def test_search_command_runs_random_search_locally(run_config, budget, capsys):
    from ems_ray.cli import main

    assert main(["search", "--config", str(run_config), "--budget", budget.describe(), "--algorithm", "random",
                 "--num-samples", "30"]) == 0
    out = capsys.readouterr().out
    assert "[search random]" in out and "30 candidates scored" in out


@pytest.fixture(scope="module")
def compared(ray_local, run_config, scorer, budget):
    """`run_compare_stage` run once: 8 candidates per algorithm (batches of 3, generations of 4)."""
    from ems_ray.config import load_run_config
    from ems_ray.search import run_compare_stage

    cfg = load_run_config(run_config)
    return run_config, run_compare_stage(cfg.context(), cfg.search, budget, scorer=scorer)


def test_compare_writes_every_file_with_equal_counts_within_budget(compared, budget):
    _, out = compared
    assert out.name == budget.slug() and out.parent.name == "compare"
    assert all((out / f).stat().st_size > 0 for f in FILES)
    algorithms = ["evolution", "tpe", "nsga2", "random"]
    summary = _read(out / "summary.csv")
    assert [r["algorithm"] for r in summary] == algorithms and all(r["scored"] == "8" for r in summary)
    assert all(float(r["latency_ms"]) <= budget.latency_ms for r in summary)
    curves = _read(out / "curves.csv")
    for algorithm in algorithms:
        mine = [r for r in curves if r["algorithm"] == algorithm]
        assert [int(r["scored"]) for r in mine] == list(range(1, 9))
        best = [float(r["best_accuracy"]) for r in mine if r["best_accuracy"]]
        assert best == sorted(best) and best[-1] == pytest.approx(
            float(next(r for r in summary if r["algorithm"] == algorithm)["best_accuracy"]))
        if algorithm in ("evolution", "random"):  # over-budget candidates rejected before scoring
            assert len(best) == 8
    front = _read(out / "front.csv")
    assert {r["algorithm"] for r in front} == set(algorithms)
    assert all(float(r["latency_ms"]) <= budget.latency_ms for r in front)
    for algorithm in algorithms:  # what the Tune and TensorBoard views read, and the candidates' rows
        assert list((out / "tune" / algorithm).glob("batch_*/events.out.tfevents.*"))
        assert list((out / "tune" / algorithm).glob("batch_*/progress.csv"))
        assert list((out / "tune" / algorithm / "candidates").glob("batch-*.parquet"))


def test_compare_random_search_under_tune_is_the_local_sequence(compared, scorer, budget):
    from ems_ray.search.tune import fit_tune, scored_trials

    _, out = compared
    results, ran = fit_tune(scorer, budget, "random", num_samples=8, storage=out / "tune", name="random", batch=3)
    columns, genes = scored_trials(results, GENOME)
    assert not ran and len(results) == 3 and list(columns["batch"]) == [0, 0, 0, 1, 1, 1, 2, 2]
    assert np.array_equal(genes, make_random_search(scorer, budget, 8, seed=0).draw(8))
    np.testing.assert_allclose(columns["accuracy"], scorer.accuracy(genes))
    for r in results:  # the per-trial report
        m = r.metrics
        assert m["candidates"] == len(m["scores"]) and m["feasible_share"] == 1.0
        assert m["accuracy"] == pytest.approx(max(m["scores"])) and m["best_so_far"] >= m["accuracy"]
        assert m["hypervolume"] > 0


def test_compare_command_reuses_finished_experiments(compared, budget, capsys):
    from ems_ray.cli import main

    path, out = compared
    before = (out / "summary.csv").read_text()
    trials = sorted(p.name for p in (out / "tune" / "random").iterdir())
    assert main(["compare-searchers", "--config", str(path), "--budget", budget.describe()]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert captured.err.count("reused the finished Tune experiment") == 4  # logged, on stderr
    assert "algorithm" in printed and "cand/s" in printed and "tensorboard --logdir" in printed
    assert (out / "summary.csv").read_text() == before
    assert sorted(p.name for p in (out / "tune" / "random").iterdir()) == trials
    # another candidate count over the same folders is refused, not mixed into the comparison
    assert main(["compare-searchers", "--config", str(path), "--budget", budget.describe(),
                 "--candidates", "12"]) == 2
    assert "holds 8 scored candidates, not 12" in capsys.readouterr().err


def _interrupt_after(n: int):
    """A Tune callback that sends this process SIGUSR1 once `n` trials have completed: Tune's signal
    handler ends the run as Ctrl+C would, saving the experiment and searcher state."""
    from ray.tune import Callback

    class Interrupt(Callback):
        def __init__(self):
            self.done = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            if self.done == n:
                os.kill(os.getpid(), signal.SIGUSR1)

    return Interrupt()


@pytest.mark.e2e
@pytest.mark.timeout(900)
@pytest.mark.parametrize("batch, interrupt_after", [(4, 2), (8, 1)], ids=["generation", "segment"])
def test_interrupted_tune_search_resumes_with_its_searcher_state(ray_local, scorer, budget, tmp_path, batch,
                                                                 interrupt_after):
    """One generation per trial, or an `EvolutionSegment` of two: the resumed search is the whole one."""
    from ems_ray.search.tune import fit_tune, scored_trials

    tiny = EvolutionConfig(population=4, parents=2, mutations=2, crossovers=2, generations=4)  # 16 candidates
    evo = make_evolution(scorer, budget, tiny, seed=3)
    proposed = []
    while not evo.done:
        proposed.append(evo.ask())
        evo.tell(proposed[-1], scorer.accuracy(proposed[-1]))
    proposed = np.concatenate(proposed)

    # interrupted after 2 of 4 generations (one trial each); the resumed run has at most 2 trials
    # left plus the one in flight, so the callback restored with the Tuner does not fire again
    results, ran = fit_tune(scorer, budget, "evolution", tiny, seed=3, storage=tmp_path, name="evo",
                            max_concurrent=2, callbacks=[_interrupt_after(interrupt_after)], batch=batch)
    first, _ = scored_trials(results, GENOME)
    assert ran and 8 <= len(first["accuracy"]) < 16
    results, ran = fit_tune(scorer, budget, "evolution", tiny, seed=3, storage=tmp_path, name="evo", max_concurrent=2,
                            batch=batch)
    columns, genes = scored_trials(results, GENOME)
    assert ran and len(results) == 16 // batch and len(genes) == 16 and not results.errors
    # the uninterrupted search's 16 candidates, in its order: none lost, none proposed twice
    assert np.array_equal(genes, proposed)
    assert columns["accuracy"].max() == pytest.approx(evo.best()[1])


def test_mlflow_tracking_is_off_by_default_and_names_the_extra(monkeypatch):
    from ems_ray.errors import InputError
    from ems_ray.search.compare import tune_loggers
    from ems_ray.search.config import SearchConfig

    assert SearchConfig().tracking.mlflow is None and len(tune_loggers(SearchConfig().tracking)) == 2
    tracking = SearchConfig(tracking={"mlflow": {"tracking_uri": "file:///tmp/x", "experiment": "e"}}).tracking
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(InputError, match=r"ems-ray\[mlflow\]"):
        tune_loggers(tracking)
    with pytest.raises(ValueError, match="experiment"):
        SearchConfig(tracking={"mlflow": {"experiment": ""}})


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="MLflow not installed (the mlflow extra)")
def test_mlflow_tracking_logs_every_trial_to_a_file_store(ray_local, scorer, budget, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from ems_ray.search.compare import tune_loggers
    from ems_ray.search.config import SearchConfig
    from ems_ray.search.tune import fit_tune

    uri = (tmp_path / "mlruns").as_uri()
    tracking = SearchConfig(tracking={"mlflow": {"tracking_uri": uri, "experiment": "compare"}}).tracking
    results, _ = fit_tune(scorer, budget, "random", num_samples=8, storage=tmp_path / "tune", name="random",
                          callbacks=tune_loggers(tracking), batch=4)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("compare").experiment_id])
    assert len(runs) == len(results) == 2
    assert all("accuracy" in run.data.metrics and "hypervolume" in run.data.metrics for run in runs)

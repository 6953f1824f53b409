"""The final-model stage: restricted search, the baselines' rules, resume, config errors, a real measurement."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import ems_ray.final._measure as measure_module
from ems_ray.config import ConfigError, RunConfig, load_run_config
from ems_ray.final import FinalConfig, fixed_bits_search, measure_subnet, run_final_stage, sequential_search
from ems_ray.final.config import SequentialConfig
from ems_ray.hardware import build_lut
from ems_ray.predictor import PredictorConfig, save_predictors, train_predictors, write_synthetic_collection
from ems_ray.predictor import load_collected
from ems_ray.search import (
    Budget, CandidateScorer, Evolution, EvolutionConfig, InfeasibleBudgetError, RestrictedGenome,
    SyntheticPredictor, column_groups, run_search_stage, within,
)
from ems_ray.space import Genome, load_preset
from ems_ray.supernet import ElasticSuperNet
from ems_ray.supernet.checkpoint import save_supernet

SPACE = load_preset("fmnist-small")
GENOME = Genome(SPACE)
GROUPS = column_groups(GENOME)
TABLE = build_lut(SPACE)
SCORER = CandidateScorer(SyntheticPredictor(SPACE), TABLE)
EVO = EvolutionConfig(population=8, parents=4, mutations=4, crossovers=4, generations=4)
EASY, TIGHT = Budget.parse("latency=0.3ms"), Budget.parse("latency=0.08ms")  # 8-bit nets need >= 0.104 ms


def _bits_are(genes: np.ndarray, bits: int) -> bool:
    """Every bit-width of every active block (canonical rows zero inactive slots) is `bits`."""
    genes = np.atleast_2d(genes)
    per_slot = genes[:, GROUPS["bits"]].reshape(len(genes), -1, 4)[GENOME.active(genes)]
    return len(per_slot) > 0 and bool(np.all(per_slot == [c.index(bits) for c in SPACE.bits.as_tuple()]))


# ----- restricted search -------------------------------------------------------------------------
def test_column_groups_partition_the_row():
    cols = np.concatenate(list(GROUPS.values()))
    assert sorted(cols.tolist()) == list(range(GENOME.width))
    with pytest.raises(ValueError, match="allowed values: \\['depth', 'kernel', 'mid', 'bits'\\]"):
        RestrictedGenome(GENOME, GENOME.largest(), ("width",))


def test_restricted_evolution_never_changes_frozen_columns_and_stays_within_budget():
    base = GENOME.largest(bits=6)[0]
    rg = RestrictedGenome(GENOME, base, ("depth", "kernel"))
    evo = Evolution(rg, EVO, lambda g: within(SCORER.costs(g), EASY), seed=1)
    asked = []
    while not evo.done:
        genes = evo.ask()
        asked.append(genes.copy())
        evo.tell(genes, SCORER.accuracy(genes))
    rows = np.concatenate(asked)
    assert np.array_equal(rows[:, rg.frozen], np.broadcast_to(base[rg.frozen], rows[:, rg.frozen].shape))
    assert within(SCORER.costs(rows), EASY).all()
    assert len({r.tobytes() for r in rows[:, GROUPS["depth"]]}) > 1  # the free columns did move
    assert len({r.tobytes() for r in rows[:, GROUPS["kernel"]]}) > 1


def test_fixed8_rows_are_all_8_bit_and_a_tight_budget_is_reported_infeasible():
    result = fixed_bits_search(SCORER, EASY, EVO, seed=0)
    assert _bits_are(result.genes, 8) and result.scores["latency_ms"] <= 0.3
    with pytest.raises(InfeasibleBudgetError, match="only \\['depth', 'kernel', 'mid'\\] free"):
        fixed_bits_search(SCORER, TIGHT, EVO, seed=0)
    # the cheapest row of the restricted space is the smallest net at 8 bits
    rg = RestrictedGenome(GENOME, GENOME.largest(bits=8)[0], ("depth", "kernel", "mid"))
    cheapest = TABLE.score(rg.cheapest(TABLE, TIGHT))["latency_ms"][0]
    assert cheapest == pytest.approx(TABLE.score(GENOME.smallest(bits=8))["latency_ms"][0])


def test_sequential_baseline_changes_only_its_own_columns_in_each_step():
    budget = Budget.parse("latency=0.4ms")
    result = sequential_search(SCORER, SCORER, budget, SequentialConfig(reference_bits=6, arch_budget_factor=1.5),
                               EVO, seed=0)
    assert [(s["step"], s["fallback"]) for s in result.extra["steps"]] == [
        ("architecture", False), ("pruning", False), ("bits", False)]
    arch, pruned = (np.asarray(result.extra["rows"][k]) for k in ("architecture", "pruning"))
    # 1. depth/kernel only: full width, reference bits, within 1.5 x budget at 6 bits
    keep = np.concatenate([GROUPS["mid"], GROUPS["bits"]])
    assert np.array_equal(arch[keep], GENOME.largest(bits=6)[0][keep])
    assert 0.4 < TABLE.score(arch)["latency_ms"][0] <= 0.6  # the relaxed budget was used
    # 2. mid only, within the budget at 6 bits
    others = np.setdiff1d(np.arange(GENOME.width), GROUPS["mid"])
    assert np.array_equal(pruned[others], arch[others]) and _bits_are(pruned, 6)
    assert TABLE.score(pruned)["latency_ms"][0] <= 0.4
    # 3. bits only, real budget
    arch_cols = np.setdiff1d(np.arange(GENOME.width), GROUPS["bits"])
    assert np.array_equal(result.genes[arch_cols], pruned[arch_cols])
    assert result.scores["latency_ms"] <= 0.4


def test_sequential_falls_back_to_the_cheapest_row_when_the_reference_budget_cannot_be_met():
    result = sequential_search(SCORER, SCORER, TIGHT, SequentialConfig(arch_budget_factor=1.0), EVO, seed=0)
    steps = result.extra["steps"]
    assert steps[0]["fallback"] and steps[1]["fallback"] and not steps[2]["fallback"]
    arch_cols = np.setdiff1d(np.arange(GENOME.width), GROUPS["bits"])
    smallest = GENOME.canonical(GENOME.smallest())[0]
    assert np.array_equal(GENOME.canonical(result.genes)[0][arch_cols], smallest[arch_cols])
    assert result.scores["latency_ms"] <= 0.08


# ----- config ------------------------------------------------------------------------------------
def test_final_config_errors_name_the_field_and_allowed_values(tmp_path):
    with pytest.raises(ValidationError, match=r"budgets\[1\] 'speed=3': budget: cannot read"):
        FinalConfig(budgets=["latency=0.3ms", "speed=3"])
    with pytest.raises(ValidationError, match="same budget is given twice"):
        FinalConfig(budgets=["latency=0.3ms", "latency=0.3"])
    with pytest.raises(ValidationError, match="'ems', 'fixed8', 'sequential' or 'no-transfer'"):
        FinalConfig(methods=["ems", "random"])
    with pytest.raises(ValidationError, match="extra"):
        FinalConfig(sequential={"reference_bit": 6})
    with pytest.raises(ValueError, match=r"reference_bits: 5 not allowed; allowed values: \[4, 6, 8\]"):
        SequentialConfig(reference_bits=5).check_space(SPACE.bits.as_tuple())
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nrun_dir: r\nsupernet: {phases: [{name: full, epochs: 1, lr: 0.1, distill: false}]}\n"
                    "final: {budgets: [latency=1s]}\n")
    with pytest.raises(ConfigError, match=r"final.budgets: budgets\[0\] 'latency=1s': budget: latency is given in ms"):
        load_run_config(path)
    assert FinalConfig().methods == ["ems", "fixed8", "sequential", "no-transfer"]


# ----- the stage ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> RunConfig:
    """An untrained super network, synthetic collected data and tiny trained predictors."""
    work = tmp_path_factory.mktemp("final")
    run = work / "run"
    torch.manual_seed(0)
    save_supernet(run / "supernet" / "supernet.pt", SPACE, ElasticSuperNet(SPACE).state_dict())
    write_synthetic_collection(run / "collect", SPACE, 120, 60, seed=2)
    pc = PredictorConfig(hidden=16, fp={"epochs": 4, "patience": 2, "batch_size": 64},
                         quant={"epochs": 4, "patience": 2, "batch_size": 32})
    save_predictors(train_predictors(load_collected(run / "collect", SPACE), pc, SPACE, seed=0), run / "predictor")
    return RunConfig.model_validate({
        "name": "tiny-final", "run_dir": str(run), "predictor": pc.model_dump(),
        "data": {"batch_size": 32, "eval_batch_size": 64, "train_subset": 128, "val_subset": 64, "test_subset": 64},
        "supernet": {"phases": [{"name": "full", "epochs": 1, "lr": 0.1, "distill": False}]},
        "quant": {"calib_batches": 1, "finetune_steps": 1, "bn_batches": 1},
        "search": {"evolution": EVO.model_dump()},
        "final": {"budgets": ["latency=0.3ms", "latency=0.08ms"], "seeds": 2},
    })


def _final(cfg: RunConfig, **options) -> Path:
    """The final stage of `cfg`, given the sections it takes (as the pipeline gives them)."""
    return run_final_stage(cfg.context(), cfg.final, search=cfg.search, predictor=cfg.predictor, quant=cfg.quant,
                           **options)


def _fake_measure(calls: list, fail_at: int | None = None):
    """Accuracy 0.4 + 0.01 x seed (quantized), 0.5 (float); raises on call number `fail_at` (a killed run)."""
    def measure(supernet_path, subnet, recipe, data, seed, threads=None):
        if fail_at is not None and len(calls) + 1 == fail_at:
            raise RuntimeError("killed")
        calls.append((subnet, seed))
        return {"fp_test_accuracy": 0.5, "quant_test_accuracy": (40 + seed) / 100, "finetune_seconds": 0.0,
                "measure_seconds": 0.01}
    return measure


def test_final_stage_writes_every_result_and_resumes(tiny_run, monkeypatch):
    cfg = tiny_run
    calls: list = []
    monkeypatch.setattr(measure_module, "measure_subnet", _fake_measure(calls))
    # the search stage already ran for the easy budget: the joint search reuses it
    searched, _ = run_search_stage(cfg.context(), cfg.search, "latency=0.3ms", scorer=_quant_scorer(cfg))
    out = _final(cfg, use_ray=False)
    assert len(calls) == 7 * 2  # fixed8 cannot meet 0.08 ms; two seeds each
    assert sorted({seed for _, seed in calls}) == cfg.final.measure_seeds(cfg.seed) == [0, 1]
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["budget"], r["method"]) for r in rows] == [
        (b, m) for b in ("latency=0.3ms", "latency=0.08ms") for m in ("ems", "fixed8", "sequential", "no-transfer")]
    status = {(r["budget"], r["method"]): r["status"] for r in rows}
    assert status.pop(("latency=0.08ms", "fixed8")) == "infeasible" and set(status.values()) == {"done"}
    ems = json.loads((out / "latency-0.3ms" / "ems.json").read_text())
    assert ems["genes"] == GENOME.canonical(searched.genes)[0].tolist()
    assert ems["search"]["reused"].endswith("result.json")
    assert ems["search_seconds"] == pytest.approx(searched.seconds)
    # per-seed accuracies, their mean and sd
    assert [(m["seed"], m["quant_test_accuracy"]) for m in ems["per_seed"]] == [(0, 0.4), (1, 0.41)]
    assert ems["quant_test_accuracy"] == pytest.approx(0.405) and ems["seeds"] == 2
    assert ems["quant_test_accuracy_sd"] == pytest.approx(np.std([0.4, 0.41], ddof=1))
    assert ems["fp_test_accuracy_sd"] == 0.0 and ems["inputs"]["measure_seeds"] == [0, 1]
    fixed = json.loads((out / "latency-0.3ms" / "fixed8.json").read_text())
    assert _bits_are(np.asarray(fixed["genes"]), 8) and (out / "latency-0.3ms" / "fixed8.yaml").is_file()
    assert (out / "predictor-no-transfer" / "quant.pt").is_file()
    for r in rows:
        if r["status"] == "done":
            assert float(r["latency_ms"]) <= float(r["budget"].split("=")[1].removesuffix("ms"))
            assert float(r["quant_test_accuracy"]) == pytest.approx(0.405)
            assert r["quant_test_accuracies"] == "0.4 0.41" and r["seeds"] == "2"
    assert json.loads((out / "run.json").read_text())["data"]["test"] == 64
    # unchanged inputs: nothing re-measured; a new recipe: everything; force: everything
    calls.clear()
    _final(cfg, use_ray=False)
    assert calls == []
    changed = cfg.model_copy(update={"final": cfg.final.model_copy(update={"recipe": cfg.quant.model_copy(
        update={"finetune_steps": 2}), "methods": ["ems"]})})
    _final(changed, use_ray=False)
    assert len(calls) == 2 * 2
    calls.clear()
    _final(changed, use_ray=False, force=True)
    assert len(calls) == 2 * 2
    # the seed count is part of a result's inputs: a third seed re-measures every sub-net
    calls.clear()
    three = changed.model_copy(update={"final": changed.final.model_copy(update={"seeds": 3})})
    _final(three, use_ray=False)
    assert sorted(seed for _, seed in calls) == [0, 0, 1, 1, 2, 2]


def test_a_run_killed_between_seeds_measures_only_the_seeds_it_lacks(tiny_run, tmp_path, monkeypatch):
    cfg = tiny_run.model_copy(update={"final": tiny_run.final.model_copy(update={
        "budgets": ["latency=0.3ms"], "methods": ["fixed8"], "seeds": 3})})
    calls: list = []
    monkeypatch.setattr(measure_module, "measure_subnet", _fake_measure(calls, fail_at=3))
    with pytest.raises(RuntimeError, match="killed"):
        _final(cfg, use_ray=False)
    path = Path(cfg.run_dir) / "final" / "latency-0.3ms" / "fixed8.json"
    partial = json.loads(path.read_text())
    assert partial["status"] == "measuring" and [m["seed"] for m in partial["per_seed"]] == [0, 1]
    calls.clear()
    monkeypatch.setattr(measure_module, "measure_subnet", _fake_measure(calls))
    _final(cfg, use_ray=False)
    assert [seed for _, seed in calls] == [2]
    done = json.loads(path.read_text())
    assert done["status"] == "done" and done["genes"] == partial["genes"] and done["seeds"] == 3
    assert done["quant_test_accuracy"] == pytest.approx(0.41)


def _quant_scorer(cfg: RunConfig) -> CandidateScorer:
    from ems_ray.predictor import load_run_predictors

    return CandidateScorer(load_run_predictors(cfg.run_dir, SPACE)[1], TABLE)


def test_infeasible_budget_fails_before_any_work(tiny_run, tmp_path):
    cfg = tiny_run.model_copy(update={"run_dir": tmp_path / "other",
                                      "final": FinalConfig(budgets=["latency=0.3ms", "latency=0.01ms"])})
    with pytest.raises(InfeasibleBudgetError, match="below the cheapest possible 0.06491 ms"):
        _final(cfg, use_ray=False)
    assert not (tmp_path / "other").exists()


def test_measure_subnet_quantizes_finetunes_and_evaluates_on_the_test_split(tiny_run):
    cfg = tiny_run
    subnet = GENOME.to_config(GENOME.smallest(bits=4)[0])
    m = measure_subnet(Path(cfg.run_dir) / "supernet" / "supernet.pt", subnet, cfg.quant, cfg.data, seed=0, threads=1)
    assert 0 <= m["quant_test_accuracy"] <= 1 and 0 <= m["fp_test_accuracy"] <= 1
    again = measure_subnet(Path(cfg.run_dir) / "supernet" / "supernet.pt", subnet, cfg.quant, cfg.data, seed=0)
    assert again["quant_test_accuracy"] == m["quant_test_accuracy"]  # deterministic in the seed


@pytest.mark.e2e  # ~25 s: two fine-tunes in Ray workers
@pytest.mark.timeout(900)
@pytest.mark.ray
def test_measurements_run_as_ray_tasks(tiny_run, ray_local):
    from ems_ray.final import FinalResources, measure_all

    cfg = tiny_run
    jobs = [(i, {"supernet_path": Path(cfg.run_dir) / "supernet" / "supernet.pt",
                 "subnet": GENOME.to_config(GENOME.smallest(bits=b)[0]), "recipe": cfg.quant, "data": cfg.data,
                 "seed": 0}) for i, b in enumerate((4, 8))]
    got = {}
    measure_all(jobs, FinalResources(num_cpus=1), True, got.__setitem__)
    assert sorted(got) == [0, 1] and all(0 <= m["quant_test_accuracy"] <= 1 for m in got.values())


def test_methods_come_from_one_registry():
    """The config's allowed methods, the result keys and the report's markers all read FINAL_METHODS."""
    from ems_ray.final.methods import FINAL_METHODS, METHODS
    from ems_ray.report.stage import MARKERS

    assert tuple(FINAL_METHODS) == METHODS == ("ems", "fixed8", "sequential", "no-transfer")
    assert set(MARKERS) == set(FINAL_METHODS)
    with pytest.raises(ValueError, match="fixed8"):  # pydantic lists the allowed values
        FinalConfig(methods=["nope"])

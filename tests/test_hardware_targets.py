"""Hardware targets and the latency table measured in ONNX Runtime (issue 13, sections 2-3).

Real measurements run on a tiny space (a few dozen layers, 6 calibration sub-nets, 5 repeats); tests of
what a table does (search restriction, scoring, host checks) use tables made from stand-in
timings, which exercise the same code without the clock.
"""
from __future__ import annotations

import numpy as np
import pytest

from ems_ray.errors import InputError
from ems_ray.hardware import (
    CostTable, HostMismatchError, NetworkFit, OnnxRuntimeTarget, TargetError, build_measured_lut, parse_target,
)
from ems_ray.hardware import measured as measured_mod
from ems_ray.hardware.layers import enumerate_layers
from ems_ray.space import Genome, SearchSpace, load_preset
from ems_ray.space.genome import DW_A, DW_W, PW_A, PW_W

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

ORT = {"kind": "onnxruntime-cpu"}


def _tiny_space(**change) -> SearchSpace:
    data = load_preset("fmnist-small").model_dump(mode="json")
    data.update(name="tiny-ort", kernel_choices=[3, 5], expand_min=4.0, expand_max=4.0, head_channels=32,
                stages=[{"out_channels": 24, "stride": 2, "depth_choices": [1, 2]},
                        {"out_channels": 32, "stride": 2, "depth_choices": [1]}],
                bits={"pw_w": [4, 8], "pw_a": [4, 8], "dw_w": [4, 8], "dw_a": [4, 8]})
    data.update(change)
    return SearchSpace.model_validate(data)


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return _tiny_space()


@pytest.fixture(scope="module")
def target() -> OnnxRuntimeTarget:
    return OnnxRuntimeTarget(kind="onnxruntime-cpu", repeats=5, warmup=1, calibration_subnets=6)


def _counting_runner(calls: list, fail_after: int | None = None):
    def run(fn, jobs):
        for job in jobs:
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt("interrupted")
            calls.append(job.get("layer") or job["key"])
            yield job, fn(job)
    return run


@pytest.fixture(scope="module")
def built(tmp_path_factory, space, target):
    """The tiny space's table, built in two runs: interrupted after 5 items, then resumed."""
    out = tmp_path_factory.mktemp("lut") / "lut.parquet"
    first, second = [], []
    with pytest.raises(KeyboardInterrupt):
        build_measured_lut(space, target, out, runner=_counting_runner(first, fail_after=5), progress=False)
    assert measured_mod.partial_path(out).is_file() and not out.exists()
    table = build_measured_lut(space, target, out, runner=_counting_runner(second), progress=False)
    return out, table, first, second


# ----- target configs ---------------------------------------------------------------------------------
def test_default_target_is_bitfusion_and_bad_kinds_are_named():
    from ems_ray.config import RunConfig

    base = {"name": "t", "run_dir": "/tmp/x", "supernet": {"phases": [{"name": "full", "epochs": 1, "lr": 0.1, "distill": False}]}}
    assert RunConfig.model_validate(base).hardware.kind == "bitfusion"
    with pytest.raises(ValueError, match="bitfusion.*onnxruntime-cpu"):
        RunConfig.model_validate({**base, "hardware": {"kind": "tpu"}})
    with pytest.raises(ValueError, match="threads"):
        RunConfig.model_validate({**base, "hardware": {**ORT, "threads": 0}})
    with pytest.raises(ValueError, match="energy"):
        RunConfig.model_validate({**base, "hardware": ORT, "final": {"budgets": ["energy=1mJ"]}})
    assert RunConfig.model_validate({**base, "hardware": ORT}).hardware.frozen_bits == 8


def test_missing_provider_names_the_available_ones(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(TargetError, match=r"cuda.*available providers: \['CPUExecutionProvider'\]"):
        parse_target({**ORT, "provider": "cuda"}).require_provider()
    assert parse_target(ORT).require_provider() == "CPUExecutionProvider"


def test_a_space_without_8_bit_choices_cannot_run_on_ort():
    space = _tiny_space(bits={"pw_w": [4, 6], "pw_a": [4, 8], "dw_w": [4, 8], "dw_a": [4, 8]})
    with pytest.raises(TargetError, match="bits.pw_w \\[4, 6\\]"):
        parse_target(ORT).check_space(space)
    parse_target("bitfusion").check_space(space)  # BitFusion runs 2..8 bits


# ----- building a measured table ------------------------------------------------------------------------
def test_build_resumes_without_re_measuring(built, space, target):
    out, table, first, second = built
    n_layers = len(enumerate_layers(space))
    assert len(first) == 5 and not set(first) & set(second)  # the interrupted items are not measured again
    assert len(first) + len(second) == n_layers + target.calibration_subnets
    assert not measured_mod.partial_path(out).exists() and out.is_file()
    assert len(table) == n_layers  # one (8, 8) entry per layer: the target's only precision
    assert set(zip(table.columns["wbits"], table.columns["abits"])) == {(8, 8)}
    assert np.all(table.spread["latency_p10_ms"] <= table.columns["latency_ms"])


def test_measured_table_round_trip_scores_and_metadata(built, space):
    out, table, *_ = built
    loaded = CostTable.load(out, space, target=parse_target(ORT))
    genome = Genome(space)
    rows = genome.with_bits(genome.sample(np.random.default_rng(0), 8), 8)
    np.testing.assert_allclose(loaded.score(rows)["latency_ms"], table.score(rows)["latency_ms"])
    assert np.all(np.isfinite(table.score(rows)["latency_ms"]))
    assert np.all(np.isinf(table.score(genome.with_bits(rows, 4))["latency_ms"]))  # int4 does not run here
    meta = table.metadata()
    assert {"cpu", "onnxruntime", "threads", "batch", "provider"} <= set(meta["host"])
    assert meta["network_fit"]["points"] == 6 and len(meta["calibration"]["genes"]) == 6
    assert meta["network_fit"]["scale"] > 0


def test_other_host_is_refused_unless_forced(built, space, monkeypatch):
    out, *_ = built
    real = measured_mod.host_info
    monkeypatch.setattr(measured_mod, "host_info", lambda t: {**real(t), "cpu": "Some Other CPU"})
    with pytest.raises(HostMismatchError, match="Some Other CPU.*force"):
        CostTable.load(out, space)
    assert CostTable.load(out, space, force=True).measured
    accepting = parse_target({**ORT, "accept_other_host": True})
    assert CostTable.load(out, space, target=accepting).measured
    with pytest.raises(Exception, match="threads 1 \\(config: 2\\)"):
        CostTable.load(out, space, target=parse_target({**ORT, "threads": 2}), force=True)


def test_network_fit_recovers_its_parameters():
    rng = np.random.default_rng(0)
    layer_sum, n = rng.uniform(0.1, 1.0, 20), rng.integers(10, 40, 20).astype(float)
    fit = measured_mod.fit_network(layer_sum, n, 0.05 + 0.9 * layer_sum + 0.002 * n)
    assert fit.constant_ms == pytest.approx(0.05) and fit.scale == pytest.approx(0.9)
    assert fit.per_layer_ms == pytest.approx(0.002) and fit.rms_rel_error < 1e-9
    near = 0.01 * n + rng.normal(0, 0.001, 20)  # layer sum almost proportional to the count
    flipped = measured_mod.fit_network(near, n, 0.05 + 0.02 * n - 0.5 * near)  # 3-term fit: scale -0.5
    assert flipped.scale > 0 and flipped.per_layer_ms == 0.0  # so: constant + scale only


def test_layer_models_run_as_integer_kernels(tmp_path):
    from ems_ray.hardware.layers import ConvLayer
    from ems_ray.quant import executed_ops

    for layer in (ConvLayer("dw", 16, 16, 3, 2, 8, 8), ConvLayer("pw", 16, 24, 1, 1, 8, 8)):
        path = tmp_path / f"{layer.kind}.onnx"
        path.write_bytes(measured_mod.layer_int8_onnx(layer, 8, 8, 0))
        assert executed_ops(path, "x", measured_mod.input_shape(layer), runs=1).counts.get("QLinearConv") == 1


# ----- validation ------------------------------------------------------------------------------------------
def test_validate_computes_its_metrics(built, space):
    from ems_ray.hardware.validate import _errors, validate_table, validation_genes, write_report

    _, table, *_ = built
    report = validate_table(table, samples=6, noise_subnets=2, noise_repeats=2, progress=False)
    calib = {tuple(r) for r in table.calibration["genes"]}
    assert report.samples == 6 and not calib & {tuple(g) for g in report.genes}
    assert -1 <= report.spearman <= 1 and 0 <= report.within_5 <= report.within_10 <= 1
    assert 0 <= report.baseline_within_10 <= 1 and report.noise_rel_spread >= 0
    assert len(validation_genes(table, 6, 1)) == 6
    measured = np.array([1.0, 2.0, 3.0, 4.0])
    assert _errors(measured * 1.07, measured) == pytest.approx((1.0, 0.0, 1.0, 0.07))
    written = write_report(report, table_dir := (built[0].parent / "val"))
    assert (table_dir / "validation.json").is_file() and len(written) >= 1


# ----- the search sees only what the target runs -----------------------------------------------------------
def _stand_in_table(space: SearchSpace) -> CostTable:
    """An ORT table of fmnist-small from stand-in timings (proportional to MACs), with a fit."""
    keys = [measured_mod.layer_key(layer, 8, 8) for layer in enumerate_layers(space)]
    timings = {k: {"median_ms": 1e-6 * measured_mod.layer_from_key(k)[0].macs + 0.01, "p10_ms": 0.0,
                   "p90_ms": 1.0} for k in keys}
    table = CostTable.from_measurements(space, parse_target(ORT), timings, {"cpu": "x"})
    return table.with_fit(NetworkFit(0.02, 0.9, 0.001, 20, 0.0))


def test_ort_target_freezes_bit_genes_at_8_in_search(scorer):
    from ems_ray.search import Budget, CandidateScorer, EvolutionConfig, run_local_evolution, run_local_random
    from ems_ray.search._restricted import target_genome

    space = scorer.space
    table = _stand_in_table(space)
    genome = Genome(space)
    bit_cols = np.concatenate([genome.slot_columns(g) for g in (PW_W, PW_A, DW_W, DW_A)])
    eight = genome.with_bits(genome.smallest(), 8)[0][bit_cols]
    rows = target_genome(table).sample(np.random.default_rng(0), 50)
    assert np.all(rows[:, bit_cols] == eight)
    assert isinstance(target_genome(_bf := scorer.table), Genome)  # BitFusion: nothing frozen
    ort_scorer = CandidateScorer(scorer.predictor, table)
    lat = table.score(rows)["latency_ms"]
    budget = Budget.parse(f"latency={np.quantile(lat, 0.5):.4f}ms")
    for result in (run_local_evolution(ort_scorer, budget, EvolutionConfig(population=20, parents=5, mutations=10,
                                                                           crossovers=10, generations=3), seed=0),
                   run_local_random(ort_scorer, budget, samples=50, seed=0)):
        assert np.all(np.asarray(result.genes)[bit_cols] == eight)
        assert result.scores["latency_ms"] <= budget.limits()["latency_ms"]


def test_collection_plan_at_the_targets_bits():
    from ems_ray.collect.plan import SamplingPlan

    space = load_preset("fmnist-small")
    genome = Genome(space)
    plan = SamplingPlan(space, "quant", 0, fixed_bits=8)
    genes = plan.take(30).genes
    active = genome.active(genes)
    for g in (PW_W, DW_A):
        cols = genome.slot_columns(g)
        assert np.all(genes[:, cols][active] == genome.with_bits(genome.smallest(), 8)[0][cols][0])
    assert plan.describe()["fixed_bits"] == 8 and "fixed_bits" not in SamplingPlan(space, "quant", 0).describe()


def test_final_models_run_in_onnx_runtime(tmp_path):
    """A final model on a measured target: exported (with digest), timed and scored as ONNX."""
    pytest.importorskip("onnxscript")
    import torch

    from ems_ray.final._measure import runtime_metrics
    from ems_ray.quant import QuantPolicy, apply_policy, calibrate
    from ems_ray.supernet import ElasticSuperNet

    space = load_preset("fmnist-small")
    genome = Genome(space)
    config = genome.to_config(genome.with_bits(genome.smallest(), 8)[0])
    torch.manual_seed(0)
    q = apply_policy(ElasticSuperNet(space).extract(config).eval(), QuantPolicy.from_subnet(config, space))
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(4)]
    calibrate(q, batches, 2)
    out = runtime_metrics(q, batches, batches, {**ORT, "repeats": 3, "warmup": 1}, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").is_file() and (tmp_path / "m.onnx.sha256").is_file()
    assert out["runtime_latency_ms"] > 0 and 0 <= out["onnx_test_accuracy"] <= 1

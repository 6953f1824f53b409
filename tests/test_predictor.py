"""Accuracy predictors: network shapes, transfer initialisation, metrics, training, files, data."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ems_ray.predictor import (
    AccuracyPredictor, CollectedData, CollectedDataError, MLPPredictor, PhaseTrainConfig, PredictorConfig,
    PredictorFileError, kendall_tau, load_collected, load_predictor, pairwise_accuracy, predictor_loss,
    metrics_over_seeds, ranking_metrics, report_seeds, samples_from_table, split_by_architecture, split_by_group,
    synthetic_accuracy, synthetic_collection, train_predictors, transfer_to_quant, write_synthetic_collection,
)
from ems_ray.artifacts import save_artifact, write_artifact
from ems_ray.collect import read_points, write_shard
from ems_ray.predictor.config import apply_overrides
from ems_ray.space import Encoding, Genome, load_preset

SPACE = load_preset("fmnist-small")
ENC = Encoding(SPACE)
TINY = {"hidden": 32, "fp": {"epochs": 15, "patience": 5, "batch_size": 64},
        "quant": {"epochs": 15, "patience": 5, "batch_size": 32}}


@pytest.fixture(scope="module")
def tables():
    return synthetic_collection(SPACE, 300, 120, seed=0)


@pytest.fixture(scope="module")
def data(tables):
    return CollectedData(samples_from_table(tables[0], SPACE, "fp"), samples_from_table(tables[1], SPACE, "quant"))


@pytest.fixture(scope="module")
def trained(data):
    return train_predictors(data, PredictorConfig.model_validate(TINY), SPACE, seed=0)


# ----- network and transfer ---------------------------------------------------------------------
def test_shapes_and_paper_defaults():
    fp = MLPPredictor(ENC.fp_dim)
    q = MLPPredictor(ENC.fp_dim, ENC.quant_dim)
    linears = [m for m in fp.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(400, ENC.fp_dim), (400, 400), (400, 400), (1, 400)]
    assert q.quant_in.weight.shape == (400, ENC.quant_dim) and q.quant_in.bias is None
    assert fp(torch.zeros(7, ENC.fp_dim)).shape == (7,)
    assert q(torch.zeros(7, ENC.dim)).shape == (7,)
    with pytest.raises(ValueError, match=f"expects {ENC.dim} input features"):
        q(torch.zeros(2, ENC.fp_dim))
    custom = MLPPredictor(10, 4, hidden=16, layers=2, activation="gelu")
    assert sum(isinstance(m, torch.nn.Linear) for m in custom.modules()) == 4
    with pytest.raises(ValueError, match="allowed values"):
        MLPPredictor(10, activation="swish")


def test_transfer_copies_fp_weights_exactly_and_starts_as_fp_function():
    torch.manual_seed(0)
    fp = MLPPredictor(ENC.fp_dim, hidden=24)
    with torch.no_grad():
        for p in fp.parameters():
            p.normal_()
    fp.set_target_scale(0.85, 0.02)
    q = transfer_to_quant(fp, ENC.quant_dim)
    fp_state, q_state = fp.state_dict(), q.state_dict()
    assert set(q_state) - set(fp_state) == {"quant_in.weight"}
    for k, v in fp_state.items():
        assert torch.equal(q_state[k], v), k
        assert q_state[k].data_ptr() != v.data_ptr()  # a copy, not shared storage
    assert torch.count_nonzero(q.quant_in.weight) == 0
    x = torch.from_numpy(ENC.encode(Genome(SPACE).sample(np.random.default_rng(0), 50)))
    with torch.no_grad():
        assert torch.equal(q(x), fp(x[:, : ENC.fp_dim]))
    # the zero head still learns: its gradient is input x back-propagated error
    q(x).sum().backward()
    assert q.quant_in.weight.grad.abs().sum() > 0
    small = transfer_to_quant(fp, ENC.quant_dim, "small", torch.Generator().manual_seed(0))
    assert 0 < small.quant_in.weight.abs().max() < 0.1
    with pytest.raises(ValueError, match="FP predictor"):
        transfer_to_quant(q, ENC.quant_dim)


# ----- metrics -------------------------------------------------------------------------------------
def _reference_tau_b(y, p):
    conc = disc = ty = tp = 0
    for i, j in itertools.combinations(range(len(y)), 2):
        a, b = np.sign(y[i] - y[j]), np.sign(p[i] - p[j])
        conc += a * b > 0
        disc += a * b < 0
        ty += a == 0
        tp += b == 0
    n0 = len(y) * (len(y) - 1) / 2
    return (conc - disc) / np.sqrt((n0 - ty) * (n0 - tp))


def test_metrics_on_known_orderings():
    y = np.array([0.1, 0.4, 0.2, 0.9, 0.5])
    assert pairwise_accuracy(y, y * 3 + 1) == 1.0 and kendall_tau(y, y * 3 + 1) == pytest.approx(1.0)
    assert pairwise_accuracy(y, -y) == 0.0 and kendall_tau(y, -y) == pytest.approx(-1.0)
    assert pairwise_accuracy(y, np.zeros(5)) == 0.5  # all predicted ties count half
    assert np.isnan(kendall_tau(y, np.zeros(5)))
    # one swapped pair of 10: 9/10 right, tau = (9 - 1) / 10
    p = np.array([0.1, 0.4, 0.2, 0.9, 0.35])
    assert pairwise_accuracy(y, p) == pytest.approx(0.9)
    assert kendall_tau(y, p) == pytest.approx(0.8)
    m = ranking_metrics(y, p)
    assert m["rmse"] == pytest.approx(np.sqrt(0.15**2 / 5)) and m["pairwise_accuracy"] == pytest.approx(0.9)


def test_tie_handling_and_reference_tau_b():
    # truth ties are left out of pairwise accuracy; prediction ties count half
    y = np.array([1.0, 1.0, 2.0, 3.0])
    p = np.array([5.0, 0.0, 2.0, 2.0])
    # decidable pairs: (0,2) wrong, (0,3) wrong, (1,2) right, (1,3) right, (2,3) tied -> 2.5 / 5
    assert pairwise_accuracy(y, p) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    for _ in range(5):
        y = rng.integers(0, 4, 12).astype(float)
        p = rng.integers(0, 4, 12).astype(float)
        assert kendall_tau(y, p) == pytest.approx(_reference_tau_b(y, p))
    big_y, big_p = rng.normal(size=2500), rng.normal(size=2500)  # several chunks
    sub = slice(0, 60)
    assert kendall_tau(big_y[sub], big_p[sub]) == pytest.approx(_reference_tau_b(big_y[sub], big_p[sub]))
    assert -0.05 < kendall_tau(big_y, big_p) < 0.05


def test_losses():
    y = torch.tensor([0.0, 1.0, 2.0, 3.0])
    for loss in ("mse", "huber", "rank"):
        cfg = PhaseTrainConfig(loss=loss)
        assert predictor_loss(y, y, cfg) < predictor_loss(y.flip(0), y, cfg)
    # equal MSE, but the second prediction ties a truly ordered pair: only the rank term sees it
    t, ordered, tied = torch.tensor([0.0, 1.0]), torch.tensor([0.5, 1.5]), torch.tensor([0.5, 0.5])
    assert predictor_loss(ordered, t, PhaseTrainConfig()) == predictor_loss(tied, t, PhaseTrainConfig())
    rank = PhaseTrainConfig(loss="rank")
    assert predictor_loss(ordered, t, rank) < predictor_loss(tied, t, rank)


# ----- training ------------------------------------------------------------------------------------
def test_training_learns_and_is_deterministic(data, trained):
    fp_m, q_m = trained.fp.metadata["metrics"], trained.quant.metadata["metrics"]
    assert fp_m["test_pairwise_accuracy"] > 0.7
    # the held-out quantized split is small and grouped; score against the noise-free truth instead
    fresh = Genome(SPACE).sample(np.random.default_rng(9), 300)
    assert pairwise_accuracy(synthetic_accuracy(SPACE, fresh)[1], trained.quant.predict(fresh)) > 0.7
    assert fp_m["epochs"] <= 15 and 1 <= fp_m["best_epoch"] <= fp_m["epochs"]
    phases = [h["phase"] for h in trained.history]
    assert phases == ["fp"] * fp_m["epochs"] + ["quant"] * q_m["epochs"]
    again = train_predictors(data, PredictorConfig.model_validate(TINY), SPACE, seed=0)
    genes = Genome(SPACE).sample(np.random.default_rng(5), 40)
    np.testing.assert_array_equal(again.quant.predict(genes), trained.quant.predict(genes))


def test_early_stopping_split_is_not_the_reported_test_split(data, trained):
    """`val_*` (best epoch, picked on the early-stopping split) and `test_*` (scored once) come from
    disjoint architectures; the test rows were never trained on."""
    for kind, samples, predictor in (("fp", data.fp, trained.fp), ("quant", data.quant, trained.quant)):
        m = predictor.metadata["metrics"]
        tr, va, te = split_by_architecture(samples.arch_id, 0.2, 0.2, seed=0)
        assert (m["train_rows"], m["val_rows"], m["test_rows"]) == (len(tr), len(va), len(te))
        assert m["test_architectures"] == len(set(samples.arch_id[te]))
        for split, idx in (("val", va), ("test", te)):
            got = ranking_metrics(samples.accuracy[idx], predictor.predict(samples.genes[idx]))
            assert m[f"{split}_pairwise_accuracy"] == pytest.approx(got["pairwise_accuracy"]), (kind, split)
            assert m[f"{split}_rmse"] == pytest.approx(got["rmse"], rel=1e-5), (kind, split)


def test_test_metrics_spread_over_seeds(data, trained):
    cfg = PredictorConfig.model_validate({**TINY, "report_seeds": 2})
    report = metrics_over_seeds(data, cfg, SPACE, 0, first=trained.metrics())
    assert report["seeds"] == report_seeds(0, 2) == [0, 1000]
    for kind, predictor in (("fp", trained.fp), ("quant", trained.quant)):
        stat = report[kind]["test_pairwise_accuracy"]
        assert stat["values"][0] == predictor.metadata["metrics"]["test_pairwise_accuracy"]  # the saved one first
        assert stat["mean"] == pytest.approx(np.mean(stat["values"]))
        assert stat["sd"] == pytest.approx(np.std(stat["values"], ddof=1))
    alone = metrics_over_seeds(CollectedData(data.fp, data.quant.subset(np.arange(0))),
                               cfg.model_copy(update={"report_seeds": 1}), SPACE, 0)
    assert alone["quant"] is None and alone["fp"]["test_rmse"]["sd"] is None


def test_early_stopping_stops(data):
    cfg = PredictorConfig.model_validate(apply_overrides(PredictorConfig.model_validate(TINY).model_dump(),
                                                         {"fp.epochs": 200, "fp.patience": 2, "fp.lr": 0.05}))
    out = train_predictors(CollectedData(data.fp, data.quant.subset(np.arange(0))), cfg, SPACE, seed=1)
    m = out.fp.metadata["metrics"]
    assert out.quant is None and m["epochs"] == m["best_epoch"] + 2 < 200


def test_resume_from_snapshot_matches_uninterrupted_run(data, trained):
    cfg = PredictorConfig.model_validate(TINY)
    snaps = {}

    def grab(record, snapshot):
        if record["epoch"] == 3:
            snaps[record["phase"]] = snapshot()

    train_predictors(data, cfg, SPACE, seed=0, on_epoch=grab)
    genes = Genome(SPACE).sample(np.random.default_rng(6), 30)
    for phase in ("fp", "quant"):
        snap = torch.load(_roundtrip(snaps[phase]), weights_only=True)  # what a Tune checkpoint holds
        resumed = train_predictors(data, cfg, SPACE, seed=0, resume=snap)
        np.testing.assert_array_equal(resumed.quant.predict(genes), trained.quant.predict(genes))
        assert len(resumed.history) == len(trained.history)


def _roundtrip(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_transfer_flag_and_scratch_scale(data):
    cfg = PredictorConfig.model_validate({**TINY, "transfer": False})
    out = train_predictors(data, cfg, SPACE, seed=0)
    assert out.quant.metadata["transfer"] is False
    assert abs(float(out.quant.model.target_mean) - data.quant.accuracy.mean()) < 0.01


# ----- inference -----------------------------------------------------------------------------------
def test_batched_predict(trained, tmp_path):
    genes = Genome(SPACE).sample(np.random.default_rng(2), 1000)
    full = trained.quant.predict(genes)
    assert full.shape == (1000,) and full.dtype == np.float32
    np.testing.assert_allclose(trained.quant.predict(genes, batch_size=64), full, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(trained.quant.predict_encoded(ENC.encode(genes)), full, rtol=1e-6, atol=1e-6)
    g = Genome(SPACE)
    fp_a, fp_b = trained.fp.predict(g.with_bits(genes, 4)), trained.fp.predict(g.with_bits(genes, 8))
    np.testing.assert_array_equal(fp_a, fp_b)  # the FP predictor ignores bit-widths
    assert not np.array_equal(trained.quant.predict(g.with_bits(genes, 4)), trained.quant.predict(g.with_bits(genes, 8)))
    with pytest.raises(ValueError, match="columns"):
        trained.quant.predict(genes[:, :-1])
    fast = load_predictor(trained.quant.save(tmp_path / "q.pt")).to(dtype=torch.bfloat16)
    np.testing.assert_allclose(fast.predict(genes), full, atol=3e-3)
    assert pairwise_accuracy(full, fast.predict(genes)) > 0.9


# ----- files ---------------------------------------------------------------------------------------
def test_save_load_roundtrip_and_validation(trained, tmp_path):
    path = trained.quant.save(tmp_path / "quant.pt")
    loaded = load_predictor(path, SPACE, kind="quant")
    genes = Genome(SPACE).sample(np.random.default_rng(3), 100)
    np.testing.assert_array_equal(loaded.predict(genes), trained.quant.predict(genes))
    assert loaded.metadata["encoding_version"] == ENC.version and loaded.metadata["hidden"] == 32
    assert load_predictor(path, "fmnist-small").kind == "quant"  # preset name works too
    json.dumps(loaded.metadata)

    with pytest.raises(PredictorFileError, match="trained for search space 'fmnist-small'.*not for 'apq-imagenet'"):
        load_predictor(path, "apq-imagenet")
    with pytest.raises(PredictorFileError, match="not a 'fp' one"):
        load_predictor(path, SPACE, kind="fp")
    with pytest.raises(PredictorFileError, match="not found"):
        load_predictor(tmp_path / "missing.pt")
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(PredictorFileError, match="no content digest"):
        load_predictor(tmp_path / "other.pt")
    save_artifact(tmp_path / "other.pt", {"something": torch.zeros(1)})
    with pytest.raises(PredictorFileError, match="not an ems-ray predictor file"):
        load_predictor(tmp_path / "other.pt")
    write_artifact(tmp_path / "junk.pt", b"not a torch file")
    with pytest.raises(PredictorFileError, match="cannot read"):
        load_predictor(tmp_path / "junk.pt")
    blob = torch.load(path, weights_only=True)
    meta = json.loads(blob["metadata"])
    meta["encoding_version"] = "onehot-v0"
    blob["metadata"] = json.dumps(meta)
    save_artifact(tmp_path / "old.pt", blob)
    with pytest.raises(PredictorFileError, match="encoding 'onehot-v0'.*retrain"):
        load_predictor(tmp_path / "old.pt", SPACE)


def test_predictor_rejects_model_of_wrong_dims():
    with pytest.raises(ValueError, match="needs input dims"):
        AccuracyPredictor(MLPPredictor(ENC.fp_dim, 3), SPACE, "quant")


# ----- collected data --------------------------------------------------------------------------------
def test_load_collected_parquet_and_dedupe(tmp_path, tables):
    write_synthetic_collection(tmp_path / "collect", SPACE, 60, 30, seed=1)
    # a second shard repeating some rows (as a retried batch could), plus a hidden temporary file
    again = read_points(tmp_path / "collect" / "fp").slice(0, 10).sort_by([("sample_id", "descending")])
    write_shard(tmp_path / "collect" / "fp", again)
    pq.write_table(again, tmp_path / "collect" / "fp" / ".part-2.parquet.tmp.parquet")
    data = load_collected(tmp_path / "collect", SPACE)
    assert len(data.fp) == 60 and len(data.quant) == 30
    assert any("10 duplicate" in n for n in data.notes)
    assert data.fp.genes.shape == (60, Genome(SPACE).width) and data.fp.genes.dtype == np.int16
    assert len(load_collected(tmp_path / "collect", SPACE, quant_scheme=2).quant) == 15
    fp_first = data.fingerprint()
    assert load_collected(tmp_path / "collect", SPACE).fingerprint() == fp_first


def test_wrong_encoding_version_and_width_fail_clearly(tmp_path, tables):
    fp = tables[0]
    old = fp.set_column(fp.column_names.index("encoding_version"), "encoding_version",
                        pa.array(["onehot-v0"] * fp.num_rows))
    with pytest.raises(CollectedDataError, match=r"encoded with \['onehot-v0'\].*'onehot-v1'"):
        samples_from_table(old, SPACE, "fp")
    other_fp, _ = synthetic_collection(load_preset("apq-imagenet"), 20, 0)
    with pytest.raises(CollectedDataError, match="gene rows have .* entries, search space 'fmnist-small' needs"):
        samples_from_table(other_fp, SPACE, "fp")
    write_shard(tmp_path / "c" / "fp", other_fp)
    with pytest.raises(CollectedDataError, match="another search space"):
        load_collected(tmp_path / "c", SPACE)
    with pytest.raises(CollectedDataError, match="missing columns"):
        samples_from_table(fp.drop(["accuracy"]), SPACE, "fp")
    with pytest.raises(CollectedDataError, match="expected only 'quant' rows"):
        samples_from_table(fp, SPACE, "quant")
    with pytest.raises(CollectedDataError, match="collect fp"):
        load_collected(tmp_path / "nothing", SPACE)
    bad = fp.set_column(fp.column_names.index("accuracy"), "accuracy", pa.array(np.full(fp.num_rows, 87.0)))
    with pytest.raises(CollectedDataError, match=r"fraction in \[0, 1\]"):
        samples_from_table(bad, SPACE, "fp")


def test_split_by_group_keeps_architectures_together():
    groups = np.repeat(np.arange(20), 3).astype(str)
    tr, va = split_by_group(groups, 0.25, seed=0)
    assert len(va) == 15 and not set(groups[tr]) & set(groups[va])
    tr2, va2 = split_by_group(groups, 0.25, seed=0)
    assert np.array_equal(va, va2)


def test_three_splits_are_disjoint_by_architecture_and_agree_across_sets():
    groups = np.repeat(np.arange(200), 3).astype(str)
    tr, va, te = split_by_architecture(groups, 0.2, 0.25, seed=3)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(len(groups)))
    sets = [set(groups[i]) for i in (tr, va, te)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert 30 <= len(sets[2]) <= 70 and 20 <= len(sets[1]) <= 60  # about 25% / 20% of 200 architectures
    # another set sharing some architectures (the quantized rows of FP-measured ones): same split for each
    other = np.concatenate([groups[::7], np.array(["new-a", "new-b", "new-c"] * 10)])
    for idx, names in zip(split_by_architecture(other, 0.2, 0.25, seed=3), sets):
        shared = set(other[idx]) - {"new-a", "new-b", "new-c"}
        assert shared <= names
    assert not np.array_equal(split_by_architecture(groups, 0.2, 0.25, seed=4)[2], te)
    # a tiny set still gets every split, by rank
    tiny = split_by_architecture(np.array(["a", "b", "c", "c"]), 0.2, 0.2, seed=0)
    assert all(len(i) for i in tiny)
    with pytest.raises(ValueError, match="at least 3 architectures"):
        split_by_architecture(np.array(["a", "b", "a"]), 0.2, 0.2, seed=0)
    with pytest.raises(ValueError, match="sum to less than 1"):
        split_by_architecture(groups, 0.5, 0.5, seed=0)
    with pytest.raises(ValueError, match=r"fp.val_fraction 0.7 \+ test_fraction 0.4 must be below 1"):
        PredictorConfig(fp={"val_fraction": 0.7}, test_fraction=0.4)


def test_config_search_keys_are_checked():
    with pytest.raises(ValueError, match="unknown predictor setting 'fp.lrr'"):
        PredictorConfig(tune={"space": {"fp.lrr": {"uniform": [1, 2]}}})
    with pytest.raises(ValueError, match="hidden: value 0 is not a valid setting"):
        PredictorConfig(tune={"space": {"hidden": {"choice": [0, 4]}}})
    with pytest.raises(ValueError, match="exactly one of"):
        PredictorConfig(tune={"space": {"hidden": {"choice": [4], "randint": [1, 3]}}})
    with pytest.raises(ValueError, match="cannot be searched"):
        PredictorConfig(tune={"space": {"mode": {"choice": ["single"]}}})
    with pytest.raises(ValueError, match="cannot be searched"):  # a search must not move the test split
        PredictorConfig(tune={"space": {"test_fraction": {"uniform": [0.1, 0.3]}}})
    assert apply_overrides({"hidden": 4, "fp": {"lr": 1}}, {"fp": {"lr": 2}})["fp"]["lr"] == 2

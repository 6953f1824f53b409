"""Data collection without Ray: sampling plans, the Parquet store, the evaluation worker, the stage."""
from __future__ import annotations


import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ems_ray.cli import main
from ems_ray.collect import (
    COLLECT_SCHEMA, FP_BITS, CollectError, CorruptShardError, SamplingPlan, ShardStore, choose_device, write_shard,
    read_points,
)
from ems_ray.hardware import build_lut
from ems_ray.space import ENCODING_VERSION, Genome, load_preset
from ems_ray.space.genome import DW_A, DW_W, PW_A, PW_W
from ems_ray.supernet import ElasticSuperNet
from ems_ray.supernet.checkpoint import SupernetFileError, save_supernet

from collect_clusters import collect_run, tiny_collect_config

SPACE = load_preset("fmnist-small")
GENOME = Genome(SPACE)
BIT_COLS = np.concatenate([GENOME.slot_columns(g) for g in (PW_W, PW_A, DW_W, DW_A)])


# ----- sampling plans ----------------------------------------------------------------------------
def test_plans_are_deterministic_and_prefix_stable():
    a, b = SamplingPlan(SPACE, "quant", 3).take(40), SamplingPlan(SPACE, "quant", 3).take(40)
    for field in ("sample_id", "scheme", "arch_id", "genes", "seed"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    short = SamplingPlan(SPACE, "quant", 3).take(13)  # cuts a scheme-2 group; extending keeps it
    assert np.array_equal(short.genes, a.genes[:13]) and np.array_equal(short.seed, a.seed[:13])
    assert not np.array_equal(SamplingPlan(SPACE, "quant", 4).take(40).genes, a.genes)
    assert np.array_equal(a.sample_id, np.arange(40)) and len(set(a.seed.tolist())) == 40
    fp = SamplingPlan(SPACE, "fp", 3).take(40)
    assert not np.array_equal(fp.seed, a.seed)  # kinds use separate streams


def test_fp_plan_pins_bits_and_quant_plan_mixes_schemes():
    fp = SamplingPlan(SPACE, "fp", 0).take(50)
    assert set(fp.scheme.tolist()) == {0}
    assert np.array_equal(fp.genes, GENOME.canonical(fp.genes))
    active = GENOME.active(fp.genes)
    for g, choices in zip((PW_W, PW_A, DW_W, DW_A), SPACE.bits.as_tuple()):
        cols = fp.genes[:, GENOME.slot_columns(g)]
        assert np.all(cols[active] == choices.index(FP_BITS))
    q = SamplingPlan(SPACE, "quant", 0, policies_per_arch=5, scheme2_fraction=0.6).take(100)
    assert abs(np.mean(q.scheme == 2) - 0.6) <= 0.05 and set(q.scheme.tolist()) == {1, 2}
    first = q.select(np.arange(5))  # the plan opens with a scheme-2 group: one arch, 5 policies
    assert set(first.scheme.tolist()) == {2} and len(set(first.arch_id.tolist())) == 1
    assert len({row.tobytes() for row in first.genes[:, BIT_COLS]}) > 1
    arch = first.genes.copy()
    arch[:, BIT_COLS] = 0
    assert len({row.tobytes() for row in GENOME.canonical(arch)}) == 1
    only1 = SamplingPlan(SPACE, "quant", 0, scheme2_fraction=0).take(20)
    assert set(only1.scheme.tolist()) == {1} and len(set(only1.arch_id.tolist())) == 20


def test_plan_rejects_bad_settings():
    with pytest.raises(ValueError, match="kind: 'int8' not allowed"):
        SamplingPlan(SPACE, "int8", 0)
    with pytest.raises(ValueError, match="scheme2_fraction"):
        SamplingPlan(SPACE, "quant", 0, scheme2_fraction=1.5)


def test_planned_batches_survive_the_ray_data_blocks_unchanged():
    from ems_ray.collect.ray_dataset import planned_columns, planned_table
    from ems_ray.collect.stage import _batches

    todo = SamplingPlan(SPACE, "quant", 0).take(7)
    batches = _batches(todo, build_lut(SPACE).score(todo.genes), 4)
    assert [len(b["sample_id"]) for b in batches] == [4, 3]
    for batch in batches:
        back = planned_columns(planned_table(batch))
        assert back.keys() == batch.keys() and back["genes"].dtype == np.int16
        for name, values in batch.items():
            assert np.array_equal(back[name], values), name


def test_collect_backend_names_the_allowed_values(tmp_path):
    assert tiny_collect_config(tmp_path).collect.backend == "ray_data"
    with pytest.raises(ValueError, match="(?s)collect.backend.*'actor_pool' or 'ray_data'"):
        tiny_collect_config(tmp_path, backend="ray-data")


# ----- the shard store ---------------------------------------------------------------------------
def _rows(ids, acc=0.5) -> dict:
    ids = np.asarray(ids, dtype=np.int64)
    n, genes = len(ids), GENOME.sample(np.random.default_rng(0), len(ids))
    return {"sample_id": ids, "kind": ["fp"] * n, "scheme": np.zeros(n, np.int8), "arch_id": ["a"] * n,
            "genes": genes, "encoding_version": [ENCODING_VERSION] * n, "accuracy": np.full(n, acc),
            "fp_accuracy": [None] * n, "latency_ms": np.ones(n), "energy_mj": np.ones(n),
            "bitops": np.ones(n, np.int64), "macs": np.ones(n, np.int64), "supernet_sha256": ["x"] * n,
            "seed": ids, "wall_seconds": np.ones(n), "device": ["cpu"] * n, "node": ["n"] * n, "worker": ["w"] * n}


def test_store_writes_atomically_and_never_twice(tmp_path):
    from ems_ray.collect import to_table

    store = ShardStore(tmp_path / "fp")
    store.prepare()
    first = store.write(to_table(_rows([3, 1, 2])))
    assert first.name.startswith("part-000000001-000000003-") and first.suffix == ".parquet"
    assert store.write(to_table(_rows([1, 2]))) is None  # nothing new
    second = store.write(to_table(_rows([2, 4, 4, 5])))  # overlap and an in-batch duplicate
    assert pq.read_table(second).column("sample_id").to_pylist() == [4, 5]
    assert not [p for p in (tmp_path / "fp").iterdir() if p.name.startswith(".")]  # no temporary left
    raw = pq.read_table(tmp_path / "fp")
    assert raw.schema.remove_metadata().equals(COLLECT_SCHEMA)
    assert sorted(raw.column("sample_id").to_pylist()) == [1, 2, 3, 4, 5]
    assert ShardStore(tmp_path / "fp").scan() == {1, 2, 3, 4, 5}
    # a duplicate that got in anyway (e.g. a shard of a retried batch) is dropped on read
    write_shard(tmp_path / "fp", to_table(_rows([3, 1, 2])))
    assert pq.read_table(tmp_path / "fp").num_rows == 8
    assert read_points(tmp_path / "fp").column("sample_id").to_pylist() == [1, 2, 3, 4, 5]


def test_corrupt_shard_is_named_and_kept(tmp_path):
    from ems_ray.collect import to_table

    store = ShardStore(tmp_path)
    store.write(to_table(_rows([0, 1])))
    bad = tmp_path / "part-000000002-000000003-deadbeef.parquet"
    bad.write_bytes(b"PAR1 truncated")
    with pytest.raises(CorruptShardError, match=bad.name) as err:
        ShardStore(tmp_path).scan()
    assert err.value.path == bad and bad.exists()


# ----- the worker and the stage, in this process -----------------------------------------------------
@pytest.fixture(scope="module")
def fp_run(tmp_path_factory):
    """One tiny FP collection shared by the tests that only read it."""
    cfg = tiny_collect_config(tmp_path_factory.mktemp("fp"), points=6, points_per_shard=4)
    lines: list[str] = []
    summary = collect_run(cfg, "fp", use_ray=False, log=lines.append)
    return cfg, summary, lines


def test_fp_collection_rows(fp_run):
    cfg, summary, lines = fp_run
    table = read_points(summary.folder)
    assert summary.total_points == summary.new_points == 6 and table.num_rows == 6
    assert table.schema.equals(COLLECT_SCHEMA)
    rows = table.to_pydict()
    assert set(rows["kind"]) == {"fp"} and set(rows["scheme"]) == {0} and set(rows["fp_accuracy"]) == {None}
    assert all(0 <= a <= 1 for a in rows["accuracy"]) and all(w > 0 for w in rows["wall_seconds"])
    plan = SamplingPlan(SPACE, "fp", cfg.seed).take(6)
    genes = np.asarray(rows["genes"], dtype=np.int16)
    assert np.array_equal(genes, plan.genes) and rows["arch_id"] == plan.arch_id.tolist()
    cost = build_lut(SPACE).score(genes)
    for col in ("latency_ms", "energy_mj", "bitops", "macs"):
        assert np.allclose(rows[col], cost[col])
    assert rows["encoding_version"] == [ENCODING_VERSION] * 6 and len(set(rows["supernet_sha256"])) == 1
    assert len(list(summary.folder.glob("part-*.parquet"))) == 2  # 4 + 2 points per shard
    assert any("6/6 points" in line and "points/min" in line and "ETA" in line for line in lines)


def test_resume_after_interrupted_run_skips_done_ids(tmp_path, fp_run):
    cfg = tiny_collect_config(tmp_path, points=6, points_per_shard=2)

    def crash_after_first(path, table):
        raise KeyboardInterrupt  # the driver dies after its first shard

    with pytest.raises(KeyboardInterrupt):
        collect_run(cfg, "fp", use_ray=False, log=lambda s: None, on_shard=crash_after_first)
    assert read_points(tmp_path / "run" / "collect" / "fp").num_rows == 2
    again = collect_run(cfg, "fp", use_ray=False, log=lambda s: None)
    assert (again.new_points, again.total_points) == (4, 6)
    raw = pq.read_table(tmp_path / "run" / "collect" / "fp")
    assert sorted(raw.column("sample_id").to_pylist()) == list(range(6))  # none lost, none twice
    # the same points measured in another run, sharded differently, give the same accuracies
    ref = read_points(fp_run[1].folder).column("accuracy").to_pylist()
    assert read_points(tmp_path / "run" / "collect" / "fp").column("accuracy").to_pylist() == ref
    done = collect_run(cfg, "fp", use_ray=False, log=lambda s: None)
    assert done.new_points == 0


def test_quant_collection_rows(tmp_path):
    cfg = tiny_collect_config(tmp_path, quant_points=3, policies_per_arch=2, points_per_shard=3)
    summary = collect_run(cfg, "quant", use_ray=False, log=lambda s: None)
    rows = read_points(summary.folder).to_pydict()
    assert rows["scheme"] == [2, 2, 1] and rows["arch_id"][0] == rows["arch_id"][1] != rows["arch_id"][2]
    assert all(0 <= a <= 1 for a in rows["accuracy"] + rows["fp_accuracy"])
    assert rows["genes"][0] != rows["genes"][1]  # same architecture, two policies


def test_changed_plan_or_measurement_is_refused(tmp_path, fp_run):
    cfg = fp_run[0]
    other = cfg.model_copy(update={"seed": cfg.seed + 1})
    with pytest.raises(CollectError, match="other settings.*seed"):
        collect_run(other, "fp", use_ray=False, log=lambda s: None)
    other = cfg.model_copy(update={"collect": cfg.collect.model_copy(update={"val_images": 32})})
    with pytest.raises(CollectError, match="val_images"):
        collect_run(other, "fp", use_ray=False, log=lambda s: None)


# ----- bad inputs fail before any work ----------------------------------------------------------------
def test_missing_or_foreign_supernet(tmp_path):
    cfg = tiny_collect_config(tmp_path, points=2)
    ckpt = tmp_path / "run" / "supernet" / "supernet.pt"
    with pytest.raises(SupernetFileError, match="not found"):
        collect_run(cfg, "fp", use_ray=False, supernet_path=tmp_path / "nope.pt", log=lambda s: None)
    other = SPACE.model_copy(update={"name": "fmnist-other", "head_channels": 128})
    save_supernet(ckpt, other, ElasticSuperNet(other).state_dict())
    with pytest.raises(SupernetFileError, match="trained for search space 'fmnist-other'"):
        collect_run(cfg, "fp", use_ray=False, log=lambda s: None)
    assert not list((tmp_path / "run" / "collect" / "fp").glob("part-*"))


def test_unwritable_output_and_corrupt_shard(tmp_path):
    cfg = tiny_collect_config(tmp_path, points=2)
    (tmp_path / "run" / "collect").write_text("a file where the folder should be")
    with pytest.raises(CollectError, match="not writable"):
        collect_run(cfg, "fp", use_ray=False, log=lambda s: None)
    (tmp_path / "run" / "collect").unlink()
    folder = tmp_path / "run" / "collect" / "fp"
    folder.mkdir(parents=True)
    bad = folder / "part-000000000-000000001-0.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(CorruptShardError, match=str(bad)):
        collect_run(cfg, "fp", use_ray=False, log=lambda s: None)
    assert bad.read_bytes() == b"not parquet" and len(list(folder.glob("part-*"))) == 1


def test_gpu_without_cuda_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, note = choose_device("auto", [0])
    assert device == "cpu" and "no CUDA device" in note and "GPU [0]" in note
    assert choose_device("auto", []) == ("cpu", None) and choose_device("cpu", [0]) == ("cpu", None)
    assert choose_device("cuda", [])[0] == "cpu"


def test_collect_command(tmp_path, capsys):
    import yaml

    cfg = tiny_collect_config(tmp_path, points=2)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["collect", "fp", "--config", str(path), "--local"]) == 0
    out = capsys.readouterr().out
    assert "2/2 points" in out and "points/min" in out
    assert main(["collect", "fp", "--config", str(path), "--local", "--supernet", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "super-network checkpoint not found" in err and "Traceback" not in err

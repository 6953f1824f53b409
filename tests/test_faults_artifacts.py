"""Damaged artifacts (issue 15, part 1): each is named in one line, exit 2, before it is used, and
neither it nor any good file is changed.

One small run (untrained super network, synthetic shards, tiny predictors, the LUT) is built once;
each test damages one file of a copy the way the issue found it (bytes flipped inside a tensor or
a data page, a truncated file, edited values) and runs the command a user would, in-process.
"""
from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from ems_ray.artifacts import DamagedArtifactError, digest_path
from ems_ray.cli import main
from ems_ray.collect import ShardStore
from ems_ray.hardware import CostTable, build_lut
from ems_ray.pipeline import Manifest, path_digest
from ems_ray.predictor import load_predictor, synthetic_collection
from ems_ray.predictor._files import PredictorFileError
from ems_ray.run_layout import RunLayout
from ems_ray.space import load_preset
from ems_ray.supernet import ElasticSuperNet
from ems_ray.supernet.checkpoint import save_supernet
from ems_ray.train.checkpoints import save_state

SPACE = load_preset("fmnist-small")
CONFIG = {
    "name": "faults",
    "data": {"batch_size": 32, "eval_batch_size": 64, "train_subset": 128, "val_subset": 64},
    "supernet": {"phases": [{"name": "full", "epochs": 1, "lr": 0.1, "distill": False}]},
    "collect": {"fp_points": 2, "bn_batches": 1, "val_images": 64, "points_per_shard": 2},
    "predictor": {"hidden": 16, "fp": {"epochs": 3, "patience": 2, "batch_size": 64},
                  "quant": {"epochs": 3, "patience": 2, "batch_size": 32}},
    "search": {"evolution": {"population": 8, "parents": 4, "mutations": 4, "crossovers": 4, "generations": 2}},
    "final": {"budgets": ["latency=0.5ms"]},
}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A run directory every stage output of which verifies (copied by each test)."""
    work = tmp_path_factory.mktemp("faults")
    layout = RunLayout(work / "run")
    torch.manual_seed(0)
    save_supernet(layout.supernet, SPACE, ElasticSuperNet(SPACE).state_dict())
    fp, quant = synthetic_collection(SPACE, 120, 40, seed=2)
    for kind, table in (("fp", fp), ("quant", quant)):
        store = ShardStore(layout.collected(kind))
        for lo in range(0, table.num_rows, 40):  # several shards, so that the good ones can be checked
            store.write(table.slice(lo, 40))
    build_lut(SPACE).save(layout.lut)
    assert _cli(work / "run", "train-predictor") == 0
    return work / "run"


def _config(run: Path) -> Path:
    path = run.parent / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "run_dir": str(run)}))
    return path


def _cli(run: Path, *argv: str) -> int:
    return main([*argv, "--config", str(_config(run))])


def _copy(good_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    return run


def _hashes(run: Path) -> dict[str, str]:
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


def _assert_named_and_kept(capsys, before: dict[str, str], run: Path, damaged: Path, *words: str) -> None:
    """One error line naming the damaged file (and `words`); every file there before is unchanged."""
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("ems-ray:")]  # progress lines aside
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    err = errors[0]
    assert err.startswith("ems-ray: error: ") and str(damaged) in err, err
    for word in words:
        assert word.lower() in err.lower(), err
    after = _hashes(run)
    assert {k: after.get(k) for k in before} == before  # the damaged file too: never rewritten or deleted


def _flip_inside_largest_tensor(path: Path) -> None:
    """XOR 64 bytes in the middle of the largest tensor record of a torch zip file."""
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.compress_size)
    with open(path, "rb") as f:  # the local header's name and extra lengths give where the data starts
        f.seek(info.header_offset + 26)
        start = info.header_offset + 30 + int.from_bytes(f.read(2), "little") + int.from_bytes(f.read(2), "little")
    data = bytearray(path.read_bytes())
    middle = start + info.compress_size // 2
    data[middle:middle + 64] = bytes(b ^ 0x5A for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_supernet_with_flipped_weight_bytes_is_refused_before_collection(good_run, tmp_path, capsys):
    run = _copy(good_run, tmp_path)
    supernet = RunLayout(run).supernet
    _flip_inside_largest_tensor(supernet)
    shutil.rmtree(RunLayout(run).collected("fp"))  # collect into a fresh folder, as the issue did
    before = _hashes(run)
    assert _cli(run, "collect", "fp", "--local") == 2
    _assert_named_and_kept(capsys, before, run, supernet, "is damaged", "move it aside")
    assert not list(RunLayout(run).collected("fp").glob("part-*"))  # nothing measured with bad weights


def test_a_truncated_supernet_is_not_a_finished_stage(good_run, tmp_path, capsys):
    run = _copy(good_run, tmp_path)
    supernet = RunLayout(run).supernet
    _truncate(supernet)
    before = _hashes(run)
    assert _cli(run, "train-supernet", "--local") == 2
    _assert_named_and_kept(capsys, before, run, supernet, "is damaged", "ems-ray train-supernet")
    assert _cli(run, "pipeline", "--only", "supernet", "--local") == 2
    _assert_named_and_kept(capsys, before, run, supernet, "is damaged")


def test_a_damaged_training_checkpoint_is_not_resumed_from(good_run, tmp_path, capsys):
    run = _copy(good_run, tmp_path)
    layout = RunLayout(run)
    layout.supernet.unlink()
    state = save_state({"epoch": 0, "model": ElasticSuperNet(SPACE).state_dict()},
                       layout.supernet_checkpoints / "epoch-0000")
    _flip_inside_largest_tensor(state)
    before = _hashes(run)
    assert _cli(run, "train-supernet", "--local") == 2
    _assert_named_and_kept(capsys, before, run, state, "is damaged", "previous epoch")


def test_a_truncated_predictor_is_not_up_to_date(good_run, tmp_path, capsys):
    run = _copy(good_run, tmp_path)
    fp = RunLayout(run).predictor("fp")
    _truncate(fp)
    before = _hashes(run)
    assert _cli(run, "train-predictor") == 2
    _assert_named_and_kept(capsys, before, run, fp, "is damaged", "ems-ray train-predictor")


def test_a_predictor_with_flipped_bytes_does_not_load(good_run, tmp_path, capsys):
    run = _copy(good_run, tmp_path)
    quant = RunLayout(run).predictor("quant")
    _flip_inside_largest_tensor(quant)
    with pytest.raises(PredictorFileError, match="is damaged"):
        load_predictor(quant, SPACE)
    before = _hashes(run)
    assert _cli(run, "search", "--budget", "latency=0.5ms") == 2
    _assert_named_and_kept(capsys, before, run, quant, "is damaged")
    assert not (run / "search").exists()


def test_a_lut_with_edited_values_is_not_used(good_run, tmp_path, capsys):
    run = _copy(good_run, tmp_path)
    lut = RunLayout(run).lut
    table = pq.read_table(lut)  # halve every latency, keeping the table's metadata, as an editor would
    column = table.schema.get_field_index("latency_ms")
    pq.write_table(table.set_column(column, "latency_ms", pc.multiply(table.column("latency_ms"), 0.5)), lut)
    before = _hashes(run)
    assert _cli(run, "search", "--budget", "latency=0.5ms") == 2
    _assert_named_and_kept(capsys, before, run, lut, "is damaged", "rebuild")
    assert not (run / "search").exists()
    with pytest.raises(DamagedArtifactError, match="refusing to replace"):  # no writer replaces it either
        CostTable.load(RunLayout(good_run).lut, SPACE).save(lut)
    assert _hashes(run) == before


def test_a_shard_with_a_damaged_data_page_is_named_by_collection_and_predictor(good_run, tmp_path, capsys):
    run = _copy(good_run, tmp_path)
    shard = sorted(RunLayout(run).collected("fp").glob("part-*.parquet"))[1]
    chunk = pq.ParquetFile(shard).metadata.row_group(0).column(6)  # the accuracy column's pages
    assert chunk.path_in_schema == "accuracy"
    data = bytearray(shard.read_bytes())
    at = chunk.data_page_offset + chunk.total_compressed_size - 16
    data[at:at + 8] = bytes(b ^ 0xFF for b in data[at:at + 8])
    shard.write_bytes(bytes(data))
    before = _hashes(run)
    assert _cli(run, "collect", "fp", "--local") == 2
    _assert_named_and_kept(capsys, before, run, shard, "is damaged", "re-measure", "sample ids 40..79")
    assert _cli(run, "train-predictor", "--force") == 2
    _assert_named_and_kept(capsys, before, run, shard, "is damaged", "other shards are kept")


def test_a_damaged_manifest_is_named(good_run, tmp_path, capsys):
    run = _copy(good_run, tmp_path)
    record = Manifest(run, CONFIG["name"])
    record.start("lut", "settings", {})
    record.finish("lut", {"lut.parquet": path_digest(RunLayout(run).lut)})
    manifest = RunLayout(run).manifest
    manifest.write_text(manifest.read_text().replace('"done"', '"dune"'))
    before = _hashes(run)
    assert _cli(run, "pipeline", "--only", "lut", "--local") == 2
    _assert_named_and_kept(capsys, before, run, manifest, "is damaged", "move it aside")


def test_a_file_without_digest_is_refused_until_one_is_recorded(good_run, tmp_path, capsys):
    """The migration of files written before digests: `sha256sum FILE > FILE.sha256` adopts one."""
    run = _copy(good_run, tmp_path)
    supernet = RunLayout(run).supernet
    digest_path(supernet).unlink()
    before = _hashes(run)
    assert _cli(run, "train-supernet", "--local") == 2
    _assert_named_and_kept(capsys, before, run, supernet, "no content digest", "sha256sum supernet.pt")
    digest = hashlib.sha256(supernet.read_bytes()).hexdigest()
    digest_path(supernet).write_text(f"{digest}  supernet.pt\n")  # what `sha256sum supernet.pt` prints
    adopted = _hashes(run)
    assert _cli(run, "train-supernet", "--local") == 0  # verified, so the stage is done: nothing trained
    assert _hashes(run) == adopted and not RunLayout(run).supernet_checkpoints.exists()

"""Fault injection (issue 15, §2 and §3): every bad input ends as one named line with exit 2
before any work, and what was already on disk is left as it was.

Each test drives the command line in-process (`ems_ray.cli.main`), asserts the message names
what is wrong, and hashes the files that must survive before and after.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ems_ray.cli import build_parser, main
from ems_ray.space import Genome, SubnetConfig, load_preset

ROOT = Path(__file__).resolve().parents[1]
SPACE = load_preset("fmnist-small")
N_TRAIN, N_TEST = 60, 20


def tree_digest(path: Path) -> str:
    """sha256 over every file under `path` (names and bytes), hidden ones included."""
    h = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for f in files:
        h.update(str(f.relative_to(path) if f != Path(path) else f.name).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def write_fake_fmnist(folder: Path) -> Path:
    """Four tiny Fashion-MNIST idx.gz files (random images)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        (folder / f"{name}-images-idx3-ubyte.gz").write_bytes(_idx_gz(rng.integers(0, 256, (n, 28, 28))))
        (folder / f"{name}-labels-idx1-ubyte.gz").write_bytes(_idx_gz(np.arange(n) % 10))
    return folder


@pytest.fixture()
def run(tmp_path: Path) -> dict[str, Path]:
    """A tiny run config on fake data: the config file, its run folder and the data folder."""
    data = write_fake_fmnist(tmp_path / "data")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"name: faults\nrun_dir: {tmp_path / 'run'}\nseed: 0\nspace: fmnist-small\n"
        f"data: {{name: fashion-mnist, root: {data}, val_size: 10, batch_size: 8, eval_batch_size: 8}}\n"
        "supernet: {phases: [{name: full, epochs: 1, lr: 0.1, distill: false}]}\n"
        "search: {evolution: {population: 8, parents: 2, mutations: 4, crossovers: 4, generations: 2}}\n"
        "final: {budgets: [latency=0.5ms]}\n"
    )
    return {"config": config, "run_dir": tmp_path / "run", "data": data, "tmp": tmp_path}


def _error_line(capsys) -> str:
    """The CLI's error: the last line on stderr (log lines such as the budget echo may come before)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "pydantic" not in err and "validation error for" not in err
    last = err.splitlines()[-1] if err else ""
    assert last.startswith("ems-ray: error: ") and err.count("ems-ray: error: ") == 1, err
    return last


def _random_subnet(seed: int) -> SubnetConfig:
    genome = Genome(SPACE)
    return genome.to_config(genome.sample(np.random.default_rng(seed), 1)[0])


# ----- §2 outputs overwritten ----------------------------------------------------------------------
def test_export_folder_is_named_by_the_subnet_digest(run):
    from ems_ray.config import load_run_config
    from ems_ray.quant.stage import export_folder

    ctx = load_run_config(run["config"]).context()
    a, b = _random_subnet(1), _random_subnet(2)
    path = run["tmp"] / "best.yaml"
    assert export_folder(ctx, path, a) == run["run_dir"] / "export" / f"best-{a.digest()}"
    assert export_folder(ctx, path, a) != export_folder(ctx, path, b)  # another sub-net, another folder
    assert a.digest() == SubnetConfig.from_yaml(a.to_yaml()).digest()  # the same sub-net read back


def test_export_refuses_to_replace_another_subnets_export(run, capsys):
    out = run["tmp"] / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"an earlier export")
    (out / "model.json").write_text(json.dumps({"subnet": _random_subnet(1).model_dump(mode="json")}))
    subnet = run["tmp"] / "best.yaml"
    _random_subnet(2).to_yaml(subnet)
    before = tree_digest(out)
    argv = ["export", "--config", str(run["config"]), "--subnet", str(subnet), "--out", str(out)]
    assert main(argv) == 2
    err = _error_line(capsys)
    assert f"{out} already holds the export of another sub-net" in err and "--force" in err
    assert tree_digest(out) == before
    # --force passes that check and goes on (here to the missing super network, before writing)
    assert main([*argv, "--force"]) == 2
    assert "super-network checkpoint not found" in _error_line(capsys)
    assert tree_digest(out) == before


def test_searches_under_different_budgets_keep_each_result(run):
    from ems_ray.config import load_run_config
    from ems_ray.hardware import build_lut
    from ems_ray.search import CandidateScorer, SyntheticPredictor, run_search_stage

    cfg = load_run_config(run["config"])
    scorer = CandidateScorer(SyntheticPredictor(SPACE), build_lut(SPACE))
    _, first = run_search_stage(cfg.context(), cfg.search, "latency=0.5ms", scorer)
    before = tree_digest(first)
    # one folder before the fix
    _, second = run_search_stage(cfg.context(), cfg.search, "latency=0.5000001ms", scorer)
    assert first != second and first.parent == second.parent
    assert tree_digest(first) == before
    assert json.loads((second / "result.json").read_text())["budget"] == "latency=0.5000001ms"


# ----- §3 inputs reinterpreted ---------------------------------------------------------------------
@pytest.mark.parametrize("argv, option", [
    (["search", "--generations", "0"], "--generations"),
    (["search", "--num-samples", "0"], "--num-samples"),
    (["collect", "fp", "--points", "0"], "--points"),
    (["collect", "fp", "--points", "-5"], "--points"),
    (["train-supernet", "--workers", "0"], "--workers"),
    (["compare-searchers", "--candidates", "-1"], "--candidates"),
    (["train-predictor", "--num-samples", "x"], "--num-samples"),
])
def test_counts_must_be_positive_at_parse_time(run, capsys, argv, option):
    """A count of 0 used to mean "the config's default" (`or` on a falsy value); -5 crashed."""
    assert main([*argv, "--config", str(run["config"])]) == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a positive whole number" in err and "Traceback" not in err
    assert not run["run_dir"].exists()  # nothing started


def test_collect_stage_rejects_zero_points(run):
    from ems_ray.collect import run_collect_stage
    from ems_ray.config import load_run_config
    from ems_ray.errors import InputError

    with pytest.raises(InputError, match="points: 0 not allowed; give a positive whole number"):
        cfg = load_run_config(run["config"])
        run_collect_stage(cfg.context(), cfg.collect, "fp", quant=cfg.quant, points=0, use_ray=False)
    assert not run["run_dir"].exists()


def test_bare_budget_numbers_are_in_the_luts_units():
    from ems_ray.search import Budget

    assert Budget.parse("bitops=5e9") == Budget.parse("bitops=5G") == Budget(bitops=5e9)
    assert Budget.parse("latency=0.3") == Budget(latency_ms=0.3)
    assert Budget.parse("bitops=500M,latency=12ms").applied() == "latency ≤ 12 ms, bitops ≤ 0.5 GBitOps"
    # the rule is stated where users read it
    search_help = build_parser()._subparsers._group_actions[0].choices["search"].format_help()
    assert "bare number in the LUT's own unit" in " ".join(search_help.split())
    assert "bitops=5e9` is `bitops=5G`" in (ROOT / "docs" / "search.md").read_text()


@pytest.mark.parametrize("budget, message", [
    ("latency=1e400ms", "budget: latency=1e400ms must be a positive finite number"),
    ("latency=0ms", "budget: latency=0ms must be a positive finite number"),
    ("bitops=-5G", "budget: bitops=-5G must be a positive finite number"),
    ("energy=3J", "budget: energy is given in mJ, not 'J'"),
])
def test_bad_budgets_are_named_before_any_work(run, capsys, budget, message):
    assert main(["search", "--config", str(run["config"]), "--budget", budget]) == 2
    assert _error_line(capsys).startswith(f"ems-ray: error: {message}")
    assert not run["run_dir"].exists()


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_every_parsed_budget_is_echoed_in_its_applied_units(run, capsys):
    # a handler on the module's own logger sees its lines whatever the CLI's logging set-up does
    logger, lines = logging.getLogger("ems_ray.search._scoring"), _Lines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    try:
        # no predictor in the run: the search stops there, after the budget was parsed and checked
        assert main(["search", "--config", str(run["config"]), "--budget", "latency=0.5,bitops=5e18"]) == 2
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    assert "predictor file not found" in _error_line(capsys)
    assert "budget: latency ≤ 0.5 ms, bitops ≤ 5000000000 GBitOps" in lines.lines
    assert any("bitops budget 5e+09 G is above the costliest sub-net of 'fmnist-small'" in line for line in lines.lines)


# ----- §3 tracebacks -------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["space", "lut", "export"])
def test_bad_yaml_in_a_space_or_subnet_file_is_one_line(run, capsys, command):
    bad = run["tmp"] / "bad.yaml"
    bad.write_text("name: [1\n")
    argv = {"space": ["space", "show", "--preset", str(bad)],
            "lut": ["lut", "build", "--preset", str(bad), "--out", str(run["tmp"] / "lut")],
            "export": ["export", "--config", str(run["config"]), "--subnet", str(bad)]}[command]
    assert main(argv) == 2
    assert _error_line(capsys) == (f"ems-ray: error: {bad}: not valid YAML: expected ',' or ']', "
                                   "but got '<stream end>' at line 2, column 1")
    assert not (run["tmp"] / "lut").exists() and not run["run_dir"].exists()


def test_a_space_file_with_wrong_fields_names_them(run, capsys):
    bad = run["tmp"] / "space.yaml"
    bad.write_text("name: x\nfoo: 1\n")
    assert main(["space", "show", "--preset", str(bad)]) == 2
    err = _error_line(capsys)
    assert err.startswith(f"ems-ray: error: {bad}: invalid search-space file: ")
    assert "stages: Field required" in err and "foo: Extra inputs are not permitted" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("pair, message", [
    ("seed=[1", "--set seed=[1: not valid YAML: expected ',' or ']'"),
    ("seed.x=1", "--set seed.x=1: seed.x: seed is 0, which has no 'x'"),
    ("seed=abc", "--set seed=abc: seed: Input should be a valid integer"),
    ("supernet.phases.0.epochs=0", "--set supernet.phases.0.epochs=0: supernet.phases.0.epochs: Input should be "
                                   "greater than 0"),
    ("supernet.phases.3.epochs=1", "--set supernet.phases.3.epochs=1: supernet.phases.3.epochs: supernet.phases "
                                   "is a list of 1"),
])
def test_set_errors_are_blamed_on_the_option(run, capsys, pair, message):
    before = tree_digest(run["config"])
    assert main(["pipeline", "--config", str(run["config"]), "--set", pair]) == 2
    err = _error_line(capsys)
    assert err.startswith(f"ems-ray: error: {message}") and str(run["config"]) not in err
    assert tree_digest(run["config"]) == before and not run["run_dir"].exists()


def test_depth_levels_beyond_the_depth_choices_is_named(run, capsys):
    assert main(["pipeline", "--config", str(run["config"]), "--set", "supernet.phases.0.depth_levels=4"]) == 2
    err = _error_line(capsys)
    assert "phases.0.depth_levels: 4 ('full') is beyond the depth choices of search space 'fmnist-small'" in err
    assert "allowed values: 0 (all) to 3" in err
    assert main(["pipeline", "--config", str(run["config"]), "--set", "supernet.phases.0.depth_levels=3",
                 "--only", "nope"]) == 2  # 3 is allowed: the run gets as far as the stage names
    assert "stage(s) ['nope'] not known" in _error_line(capsys)


@pytest.mark.parametrize("change, words", [
    (lambda entry: entry.update(bogus=1), "unknown key(s) ['bogus']"),
    (lambda entry: entry.pop("fingerprint"), "missing key(s) ['fingerprint']"),
    (lambda entry: entry.pop("name"), "missing key(s) ['name']"),
])
def test_a_manifest_entry_with_other_keys_is_named_and_kept(run, capsys, change, words):
    from ems_ray.artifacts import write_artifact
    from ems_ray.pipeline.manifest import Manifest

    run_dir = run["run_dir"]
    manifest = Manifest(run_dir, "faults")
    manifest.start("lut", "abc", {})
    manifest.finish("lut", {})
    blob = json.loads(manifest.path.read_text())
    change(blob["stages"][0])
    write_artifact(manifest.path, json.dumps(blob))  # a valid digest: the entry's keys are what is wrong
    before = tree_digest(run_dir)
    assert main(["pipeline", "--config", str(run["config"]), "--only", "lut", "--local"]) == 2
    err = _error_line(capsys)
    assert f"{manifest.path}: stages[0] is not a stage record ({words}" in err and "move the manifest aside" in err
    assert tree_digest(run_dir) == before  # not even config.yaml was rewritten


def test_a_truncated_gz_data_file_is_named(run, capsys):
    labels = run["data"] / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-12])
    before = tree_digest(run["data"])
    assert main(["pipeline", "--config", str(run["config"]), "--only", "lut", "--local"]) == 2
    err = _error_line(capsys)
    assert err.startswith(f"ems-ray: error: {labels}: cannot be read (Compressed file ended")
    assert "truncated or damaged" in err
    assert tree_digest(run["data"]) == before and not run["run_dir"].exists()

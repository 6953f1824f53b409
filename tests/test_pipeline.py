"""The pipeline runner: manifest, skipping current stages, resuming after a failure, preflight."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ems_ray.artifacts import write_artifact
from ems_ray.config import ConfigError, RunConfig, load_run_config
from ems_ray.pipeline import Manifest, ManifestError, Stage, path_digest, run_pipeline
from ems_ray.pipeline.runner import preflight


def _cfg(tmp_path: Path, **extra) -> RunConfig:
    return RunConfig.model_validate({
        "name": "pipe", "run_dir": str(tmp_path / "run"), "space": "fmnist-small",
        "data": {"train_subset": 64, "val_subset": 32},
        "supernet": {"phases": [{"name": "full", "epochs": 1, "lr": 0.1, "distill": False}]},
        "final": {"budgets": ["latency=0.3ms"]}, **extra})


def _fake_stages(calls: list[str], fail_once: set[str] = frozenset()):
    """Three file-writing stages, b after a, c after b; a stage in `fail_once` raises on its first call."""
    failed: set[str] = set()

    def writer(name: str, source: str | None):
        def run(cfg: RunConfig, use_ray: bool) -> None:
            calls.append(name)
            out = Path(cfg.run_dir) / f"{name}.txt"
            text = f"{name}:{cfg.seed}"
            if source:
                text += "<" + (Path(cfg.run_dir) / f"{source}.txt").read_text()
            out.write_text(text)
            if name in fail_once and name not in failed:
                failed.add(name)
                raise RuntimeError(f"{name} interrupted")
        return run

    def outputs(name):
        return lambda cfg: [f"{name}.txt"]

    return [Stage("a", writer("a", None), lambda cfg: {"seed": cfg.seed}, outputs("a")),
            Stage("b", writer("b", "a"), lambda cfg: {}, outputs("b"), ("a",)),
            Stage("c", writer("c", "b"), lambda cfg: {}, outputs("c"), ("b",))]


@pytest.fixture
def no_preflight(monkeypatch):
    monkeypatch.setattr("ems_ray.pipeline.runner.preflight", lambda cfg: None)


def test_path_digest_covers_contents_and_names_but_not_hidden_files(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "x.parquet").write_bytes(b"1")
    (d / "sub" / "y").write_bytes(b"2")
    first = path_digest(d)
    (d / ".tmp-shard").write_bytes(b"partial")
    (d / "_plan.json").write_text("{}")
    assert path_digest(d) == first
    (d / "sub" / "y").write_bytes(b"3")
    assert path_digest(d) != first
    assert path_digest(tmp_path / "absent") is None
    assert path_digest(d / "x.parquet") != path_digest(d)


def test_runs_in_order_then_skips_everything_current(tmp_path, no_preflight):
    cfg, calls, logs = _cfg(tmp_path), [], []
    stages = _fake_stages(calls)
    manifest = run_pipeline(cfg, use_ray=False, stages=stages, log=logs.append)
    assert calls == ["a", "b", "c"]
    assert [r.status for r in manifest.stages.values()] == ["done"] * 3
    blob = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert blob["stages"][1]["inputs"] == {"a.txt": path_digest(tmp_path / "run" / "a.txt")}
    assert (tmp_path / "run" / "config.yaml").is_file()
    run_pipeline(cfg, use_ray=False, stages=stages, log=logs.append)
    assert calls == ["a", "b", "c"]
    assert sum("skipped" in line for line in logs) == 3


def test_changed_settings_rerun_the_stage_and_everything_downstream(tmp_path, no_preflight):
    calls: list[str] = []
    stages = _fake_stages(calls)
    run_pipeline(_cfg(tmp_path), use_ray=False, stages=stages, log=lambda s: None)
    run_pipeline(_cfg(tmp_path, seed=1), use_ray=False, stages=stages, log=lambda s: None)
    assert calls == ["a", "b", "c", "a", "b", "c"]


def test_an_edited_output_is_not_trusted(tmp_path, no_preflight):
    cfg, calls = _cfg(tmp_path), []
    stages = _fake_stages(calls)
    run_pipeline(cfg, use_ray=False, stages=stages, log=lambda s: None)
    (tmp_path / "run" / "c.txt").write_text("edited by hand")
    run_pipeline(cfg, use_ray=False, stages=stages, log=lambda s: None)
    assert calls == ["a", "b", "c", "c"]


def test_a_failed_stage_is_recorded_and_resumed_without_redoing_finished_ones(tmp_path, no_preflight):
    cfg, calls, logs = _cfg(tmp_path), [], []
    stages = _fake_stages(calls, fail_once={"b"})
    with pytest.raises(RuntimeError, match="b interrupted"):
        run_pipeline(cfg, use_ray=False, stages=stages, log=logs.append)
    record = Manifest(cfg.run_dir, cfg.name).stages["b"]
    assert record.status == "failed" and "b interrupted" in record.error
    run_pipeline(cfg, use_ray=False, stages=stages, log=logs.append)
    assert calls == ["a", "b", "b", "c"]
    assert any("resuming an unfinished attempt" in line for line in logs)
    assert Manifest(cfg.run_dir, cfg.name).stages["b"].attempts == 2


def test_a_killed_driver_leaves_running_which_is_resumed(tmp_path, no_preflight):
    cfg, calls = _cfg(tmp_path), []
    stages = _fake_stages(calls)
    run_pipeline(cfg, use_ray=False, stages=stages, log=lambda s: None)
    m = Manifest(cfg.run_dir, cfg.name)
    m.stages["c"].status = "running"  # what a SIGKILL in the middle of c leaves behind
    m.save()
    run_pipeline(cfg, use_ray=False, stages=stages, log=lambda s: None)
    assert calls == ["a", "b", "c", "c"]


def test_only_and_unknown_stage_names(tmp_path, no_preflight):
    cfg, calls = _cfg(tmp_path), []
    stages = _fake_stages(calls)
    run_pipeline(cfg, use_ray=False, stages=stages, only=["a"], log=lambda s: None)
    assert calls == ["a"]
    with pytest.raises(ValueError, match=r"\['zz'\] not known; allowed values: \['a', 'b', 'c'\]"):
        run_pipeline(cfg, use_ray=False, stages=stages, only=["zz"])


def test_corrupt_manifest_fails_clearly(tmp_path, no_preflight):
    cfg = _cfg(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="no content digest"):
        run_pipeline(cfg, use_ray=False, stages=_fake_stages([]))
    write_artifact(tmp_path / "run" / "manifest.json", "{not json")
    with pytest.raises(ManifestError, match="cannot read the run manifest"):
        run_pipeline(cfg, use_ray=False, stages=_fake_stages([]))
    write_artifact(tmp_path / "run" / "manifest.json", json.dumps({"format": "other"}))
    with pytest.raises(ManifestError, match="not an ems-ray run manifest"):
        Manifest(cfg.run_dir, cfg.name)


def test_preflight_rejects_infeasible_budgets_missing_budgets_and_missing_data(tmp_path):
    with pytest.raises(ValueError, match="cheapest possible"):
        preflight(_cfg(tmp_path, final={"budgets": ["latency=0.01ms"]}))
    with pytest.raises(ValueError, match="final.budgets: the pipeline needs at least one budget"):
        preflight(_cfg(tmp_path, final={"budgets": []}))
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST"):
        preflight(_cfg(tmp_path, data={"root": str(tmp_path / "no-data")}))
    assert not (tmp_path / "run").exists()  # nothing written before the checks pass


def test_cli_pipeline_reports_a_bad_config_in_one_line(tmp_path, capsys):
    from ems_ray.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrun_dir: r\nsupernet: {phases: []}\nfinal: {budgets: [speed=3]}\n")
    assert main(["pipeline", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "final.budgets" in err and "speed=3" in err
    with pytest.raises(ConfigError):
        load_run_config(bad)


TINY_RUN = {
    "space": "fmnist-small", "seed": 1,
    "data": {"batch_size": 32, "eval_batch_size": 64, "train_subset": 256, "val_subset": 128, "test_subset": 128},
    "supernet": {"steps_per_epoch": 2, "eval": {"random_subnets": 1, "bn_batches": 1, "val_batches": 1},
                 "phases": [{"name": "full", "epochs": 1, "lr": 0.05, "kernels": "max", "depth_levels": 1,
                             "width_fraction": 0, "distill": False},
                            {"name": "all", "epochs": 1, "lr": 0.02, "kernels": "all", "width_fraction": 1.0,
                             "sort_channels": True}]},
    "quant": {"calib_batches": 1, "finetune_steps": 1, "bn_batches": 1},
    "collect": {"fp_points": 24, "quant_points": 24, "policies_per_arch": 4, "bn_batches": 1, "val_images": 64,
                "points_per_shard": 8, "progress_every_s": 0},
    "predictor": {"hidden": 32, "fp": {"epochs": 5, "patience": 5}, "quant": {"epochs": 5, "patience": 5},
                  "report_seeds": 2},
    "search": {"evolution": {"population": 8, "parents": 2, "mutations": 4, "crossovers": 4, "generations": 3},
               "compare": {"algorithms": ["evolution", "random"], "candidates": 8, "population": 4, "parents": 2},
               "max_concurrent": 2},
    "final": {"budgets": ["latency=0.3ms"], "seeds": 2},
    "ray": {"num_cpus": 2, "include_dashboard": False},
}


def tiny_run_config(run_dir: Path) -> RunConfig:
    """Every stage for real on ~250 images and a two-step super network: about a minute on 2 cores."""
    return RunConfig.model_validate({"name": "tiny", "run_dir": str(run_dir), **TINY_RUN})


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_the_whole_pipeline_on_a_tiny_run_then_a_rerun_skips_it_all(tmp_path, ray_local):
    cfg, logs = tiny_run_config(tmp_path / "run"), []
    manifest = run_pipeline(cfg, use_ray=False, log=logs.append)
    assert {r.name: r.status for r in manifest.stages.values()} == dict.fromkeys(
        ["lut", "supernet", "collect-fp", "collect-quant", "predictor", "search", "final", "compare", "report"], "done")
    run = tmp_path / "run"
    summary = (run / "final" / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 4 and summary[0].startswith("budget,method")
    report = (run / "report" / "report.md").read_text()
    assert "latency=0.3ms" in report and (run / "report" / "accuracy_latency.png").is_file()
    assert (run / "compare" / "latency-0.3ms" / "summary.csv").is_file()
    logs.clear()
    run_pipeline(cfg, use_ray=False, log=logs.append)
    assert sum("skipped" in line for line in logs) == 9


def _killed_then_resumed(tmp_path: Path) -> Path:
    """Start the CLI pipeline, SIGKILL it once collect-quant has written a shard, run it again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    run = tmp_path / "killed"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"name": "tiny", "run_dir": str(run), **TINY_RUN}))
    cmd = [sys.executable, "-m", "ems_ray.cli", "pipeline", "--config", str(config), "--local"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not list((run / "collect" / "quant").glob("part-*.parquet")):
            assert proc.poll() is None, "the pipeline ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stages = {r.name: r.status for r in Manifest(run, "tiny").stages.values()}
    assert stages["collect-quant"] == "running" and "final" not in stages
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return run


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_a_killed_pipeline_resumes_and_ends_as_an_uninterrupted_run(tmp_path):
    import torch

    from ems_ray.collect import read_points
    from ems_ray.supernet.checkpoint import load_supernet

    killed = _killed_then_resumed(tmp_path)
    m = Manifest(killed, "tiny")
    assert all(r.status == "done" for r in m.stages.values()) and len(m.stages) == 9
    assert m.stages["collect-quant"].attempts == 2 and m.stages["supernet"].attempts == 1
    clean = tiny_run_config(tmp_path / "clean")
    run_pipeline(clean, use_ray=False, only=["supernet", "collect-fp", "collect-quant"], log=lambda s: None)
    weights = [load_supernet(run / "supernet" / "supernet.pt").state_dict() for run in (killed, clean.run_dir)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # the file also holds timings
    for part in ("collect/fp", "collect/quant"):
        a, b = read_points(killed / part), read_points(clean.run_dir / part)
        assert a.column("sample_id").to_pylist() == b.column("sample_id").to_pylist()
        assert a.column("accuracy").to_pylist() == b.column("accuracy").to_pylist()


def test_every_stage_output_is_a_path_of_the_run_layout(tmp_path):
    """The stage table names its outputs through `RunLayout`: relative, inside the run directory."""
    from ems_ray.pipeline import STAGES
    from ems_ray.run_layout import RunLayout

    cfg = _cfg(tmp_path, final={"budgets": ["latency=0.3ms", "bitops=2G"]})
    layout = RunLayout.of(cfg)
    outputs = {s.name: s.outputs(cfg) for s in STAGES}
    assert outputs["supernet"] == [layout.relative(layout.supernet)] == ["supernet/supernet.pt"]
    assert outputs["search"] == ["search/latency-0.3ms/best.yaml", "search/bitops-2G/best.yaml"]
    assert outputs["lut"] == ["lut.parquet"] and outputs["report"] == ["report/report.md"]


def test_every_stage_prices_with_the_one_run_lut(tmp_path):
    """`run_cost_table` is the LUT of every stage: `search.lut` when set, else `<run_dir>/lut.parquet`,
    built and saved on first use."""
    from ems_ray.hardware import build_lut, run_cost_table

    cfg = _cfg(tmp_path)
    table = run_cost_table(cfg.context())
    assert (tmp_path / "run" / "lut.parquet").is_file()
    assert run_cost_table(cfg.context()).metadata() == table.metadata()
    other = build_lut(cfg.search_space()).save(tmp_path / "mine.parquet")
    cfg2 = cfg.model_copy(update={"search": cfg.search.model_copy(update={"lut": other})})
    assert run_cost_table(cfg2.context()).metadata() == table.metadata()
    cfg3 = cfg.model_copy(update={"search": cfg.search.model_copy(update={"lut": tmp_path / "none.parquet"})})
    with pytest.raises(FileNotFoundError, match="search.lut: cost table not found"):
        run_cost_table(cfg3.context())

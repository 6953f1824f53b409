"""The predictor stage: `ems-ray train-predictor` in single mode, and the Tune trainable/search."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from ems_ray.cli import main
from ems_ray.config import load_run_config
from ems_ray.predictor import load_run_predictors, run_predictor_stage, write_synthetic_collection
from ems_ray.space import Genome, load_preset

ROOT = Path(__file__).resolve().parents[1]
SPACE = load_preset("fmnist-small")
TINY = {"hidden": 16, "fp": {"epochs": 6, "patience": 3, "batch_size": 64},
        "quant": {"epochs": 6, "patience": 3, "batch_size": 32}, "report_seeds": 2}


def _config_file(tmp_path: Path, predictor: dict) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "fmnist-quick.yaml").read_text())
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["predictor"] = predictor
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    write_synthetic_collection(tmp_path / "run" / "collect", SPACE, 150, 60, seed=2)
    return path


def _assert_reported_over_seeds(summary: dict, seed: int = 0) -> None:
    """The test metrics' mean ± sd over the report seeds, the saved predictors' figures first."""
    report = summary["report"]
    assert report["seeds"] == [seed, seed + 1000]
    for kind in ("fp", "quant"):
        saved = summary["metrics"][kind]
        assert 0 <= saved["test_pairwise_accuracy"] <= 1 and saved["test_rows"] > 0
        stat = report[kind]["test_pairwise_accuracy"]
        assert stat["values"][0] == saved["test_pairwise_accuracy"] and len(stat["values"]) == 2
        assert stat["sd"] == pytest.approx(np.std(stat["values"], ddof=1))


def test_train_predictor_command_single_mode(tmp_path, capsys):
    path = _config_file(tmp_path, TINY)
    assert main(["train-predictor", "--config", str(path)]) == 0
    out = tmp_path / "run" / "predictor"
    assert {p.name for p in out.iterdir()} >= {"fp.pt", "quant.pt", "metrics.json"}
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["mode"] == "single" and summary["data"]["quant"]["rows"] == 60
    assert 0 <= summary["metrics"]["quant"]["val_pairwise_accuracy"] <= 1
    _assert_reported_over_seeds(summary)
    fp, quant = load_run_predictors(tmp_path / "run", SPACE)
    assert quant.predict(Genome(SPACE).sample(np.random.default_rng(0), 5)).shape == (5,)
    assert quant.metadata["metrics"] == summary["metrics"]["quant"]  # the saved predictor is the run seed's
    err = capsys.readouterr().err  # the CLI logs to stderr
    assert "quant: test rmse" in err and "mean ± sd over 2 seeds" in err
    # same data and settings: nothing to do; more data: retrain
    assert main(["train-predictor", "--config", str(path)]) == 0
    assert "stage already done" in capsys.readouterr().err
    write_synthetic_collection(tmp_path / "run" / "collect", SPACE, 160, 60, seed=2)
    assert main(["train-predictor", "--config", str(path)]) == 0
    assert "stage already done" not in capsys.readouterr().err


def test_train_predictor_without_data_is_one_clear_line(tmp_path, capsys):
    cfg = yaml.safe_load((ROOT / "configs" / "fmnist-quick.yaml").read_text())
    cfg["run_dir"] = str(tmp_path / "empty")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train-predictor", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "ems-ray collect fp" in err and "Traceback" not in err


@pytest.mark.ray
def test_tune_search_reports_per_epoch_and_exports_best(tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")  # result.json per trial, to check reports
    predictor = {**TINY, "mode": "tune",
                 "tune": {"num_samples": 2, "checkpoint_every": 2, "cpus_per_trial": 1,
                          "space": {"fp.lr": {"loguniform": [1e-3, 1e-2]}, "hidden": {"choice": [8, 16]}}}}
    cfg = load_run_config(_config_file(tmp_path, predictor))
    out = run_predictor_stage(cfg.context(), cfg.predictor)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["mode"] == "tune" and len(summary["trials"]) == 2
    best_score = max(t["score"] for t in summary["trials"])
    # trials are ranked on the early-stopping split; the test split is only reported
    assert summary["metrics"]["quant"]["val_pairwise_accuracy"] == pytest.approx(best_score)
    _assert_reported_over_seeds(summary)
    fp, quant = load_run_predictors(cfg.run_dir, SPACE)
    assert quant.metadata["hidden"] == summary["best_trial"]["hidden"]
    # every trial reported each epoch of both phases, then a final report; some with checkpoints
    results = [json.loads(line) for f in (out / "tune").rglob("result.json") for line in f.read_text().splitlines()]
    phases = {r["phase"] for r in results}
    assert phases == {"fp", "quant", "final"}
    assert sum(r["phase"] == "final" for r in results) == 2
    assert any(r.get("checkpoint_dir_name") for r in results if r["phase"] != "final")

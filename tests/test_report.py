"""The report stage, from hand-made final/compare/manifest files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ems_ray.config import RunConfig
from ems_ray.final import SUMMARY_COLUMNS, write_summary
from ems_ray.report import run_report_stage
from ems_ray.report.stage import noise_mark, reference_method
from ems_ray.stats import exceeds_noise, mean_sd, pooled_sd

SUPERNET = {"phases": [{"name": "full", "epochs": 1, "lr": 0.1, "distill": False}]}
ROWS = [
    {"budget": "latency=0.3ms", "method": "ems", "status": "done", "predicted_accuracy": 0.871,
     "predicted_accuracy_quant": 0.871, "quant_test_accuracy": 0.8523, "quant_test_accuracy_sd": 0.001,
     "fp_test_accuracy": 0.8611, "fp_test_accuracy_sd": 0.0005, "seeds": 3,
     "per_seed": [{"quant_test_accuracy": a} for a in (0.8513, 0.8523, 0.8533)],
     "latency_ms": 0.2911, "energy_mj": 0.21, "bitops": 1.234e8, "macs": 5e6, "search_seconds": 3.25,
     "measure_seconds": 40.0, "genes": [1, 2]},
    {"budget": "latency=0.3ms", "method": "fixed8", "status": "done", "predicted_accuracy": 0.842,
     "predicted_accuracy_quant": 0.842, "quant_test_accuracy": 0.8307, "quant_test_accuracy_sd": 0.002,
     "fp_test_accuracy": 0.8390, "fp_test_accuracy_sd": 0.001, "seeds": 3,
     "latency_ms": 0.2987, "energy_mj": 0.25, "bitops": 2.5e8, "macs": 4e6, "search_seconds": 2.5,
     "measure_seconds": 38.0, "genes": [0, 2]},
    {"budget": "latency=0.3ms", "method": "sequential", "status": "done", "predicted_accuracy": 0.8534,
     "predicted_accuracy_quant": 0.8534, "quant_test_accuracy": 0.8510, "quant_test_accuracy_sd": 0.003,
     "fp_test_accuracy": 0.86, "fp_test_accuracy_sd": 0.001, "seeds": 3,
     "latency_ms": 0.25, "energy_mj": 0.2, "bitops": 1e8, "macs": 4e6, "search_seconds": 2.0,
     "measure_seconds": 38.0, "genes": [0, 1]},
    {"budget": "latency=0.08ms", "method": "ems", "status": "done", "predicted_accuracy": 0.801,
     "predicted_accuracy_quant": 0.801, "quant_test_accuracy": 0.7902, "fp_test_accuracy": 0.80,
     "latency_ms": 0.0795, "energy_mj": 0.1, "bitops": 5e7, "macs": 2e6, "search_seconds": 4.75,
     "measure_seconds": 30.0, "genes": [0, 0]},
    {"budget": "latency=0.08ms", "method": "fixed8", "status": "infeasible", "message": "no sub-net"},
]


def _run(tmp_path: Path) -> RunConfig:
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    write_summary(run / "final", ROWS)
    (run / "final" / "run.json").write_text(json.dumps({
        "name": "hand-made", "space": "fmnist-small", "supernet_sha256": "abcdef0123456789ffff",
        "data": {"name": "fashion-mnist", "train": 1000, "val": 200, "test": 300}}))
    return RunConfig.model_validate({"name": "cfg-name", "run_dir": str(run), "supernet": SUPERNET})


def test_report_tables_and_plot_come_from_the_files(tmp_path):
    cfg = _run(tmp_path)
    out = run_report_stage(cfg.context())
    md = (out / "report.md").read_text()
    assert "# Report: hand-made" in md and "abcdef0123456789" in md and "test 300 images" in md
    assert "| ems | 0.8710 | 0.8523 ± 0.0010 | reference | 0.8611 ± 0.0005 | 3 | 0.2911 | 0.21 | 0.1234 | 3.2 |" in md
    # 0.0216 apart with sds 0.001 / 0.002: beyond 2 x pooled sd (0.0032); 0.0013 apart, pooled sd 0.0022: noise
    assert "| fixed8 | 0.8420 | 0.8307 ± 0.0020 | -0.0216 (**beyond noise**) |" in md
    assert "| sequential | 0.8534 | 0.8510 ± 0.0030 | -0.0013 (within noise) |" in md
    assert "| fixed8 | *infeasible* |" in md
    assert "2 × pooled sd" in md and "Δ vs ems" in md
    assert "mean |gap| 0.0108 over 4 sub-nets" in md  # (0.0187 + 0.0113 + 0.0024 + 0.0108) / 4
    assert "4.00 s on average over 2 budget(s)" in md  # marginal cost: mean of the ems search seconds
    assert (out / "accuracy_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Searchers compared" not in md and "Stage timings" not in md  # optional inputs absent


def test_report_adds_searchers_and_stage_timings_when_present(tmp_path):
    cfg = _run(tmp_path)
    run = Path(cfg.run_dir)
    cmp_dir = run / "compare" / "latency-0.3ms"
    cmp_dir.mkdir(parents=True)
    with (cmp_dir / "summary.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algorithm", "scored", "best_accuracy", "latency_ms", "energy_mj", "bitops", "seconds",
                    "candidates_per_s"])
        w.writerow(["evolution", 400, 0.8712, 0.29, 0.2, 1.5e8, 1.5, 266.7])
        w.writerow(["tpe", 400, 0.8655, 0.28, 0.2, 1.4e8, 160.0, 2.5])
    with (cmp_dir / "curves.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algorithm", "scored", "best_accuracy"])
        for algo, accs in (("evolution", (0.80, 0.85, 0.8712)), ("tpe", (0.79, 0.84, 0.8655))):
            for i, a in enumerate(accs):
                w.writerow([algo, 100 * (i + 1), a])
    (run / "manifest.json").write_text(json.dumps({"stages": [
        {"name": "search", "status": "done", "seconds": 12.5},
        {"name": "final", "status": "running", "seconds": None}]}))
    out = run_report_stage(cfg.context())
    md = (out / "report.md").read_text()
    assert "| tpe | 400 | 0.8655 | 0.28 | 0.2 | 0.14 | 160.0 | 2.5 |" in md
    assert (out / "searchers_latency-0.3ms.png").is_file() and (out / "searchers_latency-0.3ms.csv").is_file()
    assert "| search | done | 12.5 |" in md and "| final | running | – |" in md


def test_report_without_final_results_says_what_to_run(tmp_path):
    cfg = RunConfig.model_validate({"name": "x", "run_dir": str(tmp_path / "none"), "supernet": SUPERNET})
    with pytest.raises(FileNotFoundError, match="run the final stage first"):
        run_report_stage(cfg.context())


def test_noise_rule_marks_differences_beyond_two_pooled_sd():
    assert pooled_sd(0.3, 3, 0.4, 3) == pytest.approx((0.125) ** 0.5)
    assert exceeds_noise(91.0, 0.2, 3, 90.5, 0.2, 3) is True  # 0.5 > 0.4
    assert exceeds_noise(91.0, 0.2, 3, 90.7, 0.2, 3) is False  # 0.3 < 0.4
    assert exceeds_noise(91.0, None, 1, 90.0, 0.2, 3) is None  # one seed: no spread to judge by
    assert mean_sd([1.0, 2.0, 3.0]) == {"mean": 2.0, "sd": 1.0, "values": [1.0, 2.0, 3.0]}
    assert mean_sd([5.0])["sd"] is None
    # rows from a summary written before per-seed measurement (no sd, no seeds column): one seed each
    old = [{"method": "ems", "status": "done", "quant_test_accuracy": "0.90"},
           {"method": "fixed8", "status": "done", "quant_test_accuracy": "0.91"}]
    assert reference_method(old) == "ems" and reference_method(old[1:]) == "fixed8"
    assert noise_mark(old[1], old[0]) == "+0.0100 (no spread: 1 seed)"


def test_summary_columns_are_what_the_report_reads():
    assert {"budget", "method", "status", "quant_test_accuracy", "quant_test_accuracy_sd", "seeds",
            "quant_test_accuracies", "latency_ms", "search_seconds"} <= set(SUMMARY_COLUMNS)


def test_report_shows_a_front_with_the_final_models_on_it(tmp_path):
    import numpy as np

    from ems_ray.search import Objectives, ParetoResult, write_front
    from ems_ray.space import Genome, load_preset

    cfg = _run(tmp_path)
    space = load_preset("fmnist-small")
    genome = Genome(space)
    genes = np.concatenate([genome.smallest(4), genome.smallest(8), genome.largest(8)]).reshape(3, -1)
    scores = {"accuracy": np.array([0.80, 0.86, 0.88]), "latency_ms": np.array([0.07, 0.25, 0.9]),
              "energy_mj": np.array([0.1, 0.2, 0.6]), "macs": np.array([1e6, 2e6, 9e6]),
              "bitops": np.array([4e7, 1e8, 5e8])}
    objectives = Objectives.parse("accuracy,latency_ms")
    front = ParetoResult("evolution", objectives, None, genes, scores, {"accuracy": 0.0, "latency_ms": 1.0}, 500, 1.5)
    write_front(front, space, Path(cfg.run_dir) / "pareto" / objectives.slug())
    md = (run_report_stage(cfg.context()) / "report.md").read_text()
    assert "## Pareto fronts" in md and "### Front `accuracy-latency_ms`" in md and "**3 points**" in md
    assert f"hypervolume {front.hypervolume:.4g}" in md and "reference point accuracy 0, latency_ms 1" in md
    # ems at 0.2911 ms: the front's best at <= 0.2911 ms is the 0.25 ms point; at 0.0795 ms the 0.07 ms one
    assert "| latency=0.3ms | ems | 0.8710 | 0.8523 ± 0.0010 | 0.8600 |" in md
    assert "| latency=0.08ms | ems | 0.8010 | 0.7902 | 0.8000 |" in md
    assert (Path(cfg.run_dir) / "report" / "pareto_accuracy-latency_ms.png").read_bytes()[:4] == b"\x89PNG"

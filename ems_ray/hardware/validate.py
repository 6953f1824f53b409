"""How well a measured table predicts whole networks, reported as nn-Meter reports it.

`validate_table` draws random sub-nets (never the calibration ones), exports each whole and times it
in ONNX Runtime (the same `measure_job` as the build, so the same host and settings), and compares
with the table's prediction: Spearman rank correlation, the share within ±5% and ±10%, beside a
MACs-proportional baseline (latency = k * MACs, k fitted by least squares). The timing noise
itself is measured too: a few sub-nets are timed again in fresh sessions, and their relative
spread bounds what any table can reach on this machine.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ems_ray.artifacts import write_artifact
from ems_ray.space import Genome

from .lut import CostTable
from .measured import Runner, calibration_genes, local_runner, measure_job, subnet_jobs
from .reference import spearman

logger = logging.getLogger(__name__)


@dataclass
class ValidationReport:
    samples: int
    spearman: float
    within_5: float
    within_10: float
    mean_abs_error: float  # relative
    baseline_spearman: float
    baseline_within_5: float
    baseline_within_10: float
    baseline_mean_abs_error: float
    noise_rel_spread: float  # median over the repeated sub-nets of (max - min) / median of their timings
    noise_repeats: int
    predicted_ms: list[float] = field(default_factory=list)
    measured_ms: list[float] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)
    macs: list[int] = field(default_factory=list)
    genes: list[list[int]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.samples} sub-nets: table  Spearman {self.spearman:.3f}, within ±5% {100 * self.within_5:.0f}%, "
                f"±10% {100 * self.within_10:.0f}%, mean |error| {100 * self.mean_abs_error:.1f}%\n"
                f"{'':{len(str(self.samples)) + 10}}MACs   Spearman {self.baseline_spearman:.3f}, within ±5% "
                f"{100 * self.baseline_within_5:.0f}%, ±10% {100 * self.baseline_within_10:.0f}%, mean |error| "
                f"{100 * self.baseline_mean_abs_error:.1f}%\n"
                f"timing noise: the same sub-net timed {self.noise_repeats} times spreads by "
                f"{100 * self.noise_rel_spread:.1f}% (median of (max - min) / median)")


def _errors(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float, float, float]:
    rel = np.abs(predicted - measured) / measured
    return spearman(predicted, measured), float(np.mean(rel <= 0.05)), float(np.mean(rel <= 0.10)), float(rel.mean())


def validation_genes(table: CostTable, samples: int, seed: int) -> np.ndarray:
    """`samples` distinct random sub-nets at the target's bits, none of them a calibration sub-net."""
    genome = Genome(table.space)
    target = table.target
    calib = (np.asarray(table.calibration["genes"], dtype=np.int16) if table.calibration
             else calibration_genes(table.space, target))
    excluded = {row.tobytes() for row in calib}
    rng = np.random.default_rng([seed, 13, 2])
    rows: list[np.ndarray] = []
    seen = set(excluded)
    while len(rows) < samples:
        for row in genome.canonical(genome.with_bits(genome.sample_spread(rng, samples), target.frozen_bits)):
            key = row.tobytes()
            if key not in seen and len(rows) < samples:
                seen.add(key)
                rows.append(row)
    return np.stack(rows)


def validate_table(table: CostTable, samples: int = 100, noise_subnets: int = 5, noise_repeats: int = 3,
                   seed: int = 1, runner: Runner | None = None, progress: bool = True) -> ValidationReport:
    """Measure `samples` whole sub-nets and compare them with `table` (see the module docstring)."""
    from ems_ray.console import Progress

    if not table.measured:
        raise ValueError("validate_table: the table is a model's (BitFusion); only measured tables can be validated")
    genes = validation_genes(table, samples, seed)
    jobs = subnet_jobs(table.space, table.target, genes)
    noise_jobs = [dict(job, key=f"noise{r}:{job['key']}") for r in range(noise_repeats - 1)
                  for job in jobs[:noise_subnets]]
    measured: dict[str, float] = {}
    with Progress("validate", len(jobs) + len(noise_jobs), unit="sub-nets", bar=None if progress else False) as bar:
        for job, result in (runner or local_runner)(measure_job, jobs + noise_jobs):
            measured[job["key"]] = result["median_ms"]
            bar.add()
    y = np.array([measured[str(i)] for i in range(len(genes))])
    scores = table.score(genes)
    predicted, macs = scores["latency_ms"], scores["macs"].astype(np.float64)
    k = float(macs @ y / (macs @ macs))
    baseline = k * macs
    spreads = []
    for i in range(min(noise_subnets, len(genes))):
        times = [measured[str(i)]] + [measured[f"noise{r}:{i}"] for r in range(noise_repeats - 1)]
        spreads.append((max(times) - min(times)) / float(np.median(times)))
    report = ValidationReport(len(genes), *_errors(predicted, y), *_errors(baseline, y),
                              float(np.median(spreads)) if spreads else float("nan"), noise_repeats,
                              predicted.tolist(), y.tolist(), baseline.tolist(), macs.astype(int).tolist(),
                              genes.tolist())
    logger.info("validation: %s", report.summary())
    return report


def write_report(report: ValidationReport, out_dir: str | Path, title: str = "") -> list[Path]:
    """`validation.json` (every point) and, where matplotlib is installed, `validation.png`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_artifact(out_dir / "validation.json", json.dumps(asdict(report), indent=1))]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed: no scatter plot (validation.json has every point)")
        return written
    y = np.asarray(report.measured_ms)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, report.predicted_ms, s=12, label=f"table (±10%: {100 * report.within_10:.0f}%)")
    ax.scatter(y, report.baseline_ms, s=12, marker="x", alpha=0.6,
               label=f"MACs-proportional (±10%: {100 * report.baseline_within_10:.0f}%)")
    lo, hi = float(y.min()) * 0.8, float(y.max()) * 1.2
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.15, label="±10%")
    ax.set(xlabel="measured (ms)", ylabel="predicted (ms)", title=title or "latency table validation",
           xlim=(lo, hi), ylim=(lo, hi))
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = out_dir / "validation.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return written + [png]

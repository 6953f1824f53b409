"""Comparing searchers: evolution, Optuna TPE, Optuna NSGA-II and random search on one scorer, one
budget and the same number of scored candidates, all through Ray Tune.

    <run_dir>/compare/<budget>/summary.csv   algorithm, scored, best_accuracy, latency_ms, energy_mj,
                                             bitops, seconds, candidates_per_s (costs of the best candidate)
    <run_dir>/compare/<budget>/curves.csv    algorithm, scored, best_accuracy: best predicted accuracy
                                             within the budget after each scored candidate
    <run_dir>/compare/<budget>/front.csv     algorithm, accuracy, latency_ms: each algorithm's
                                             non-dominated points among its within-budget candidates
    <run_dir>/compare/<budget>/curves.png, front.png
    <run_dir>/compare/<budget>/tune/<algorithm>/   the Tune experiments (JSON, CSV, TensorBoard logs),
                                             every candidate in candidates/batch-<k>.parquet

Candidates count in the order they were asked (batch by batch, each Tune trial one batch; with
one trial in flight, the default, that is the order they were scored). Before an
algorithm's first within-budget candidate `best_accuracy` is empty in curves.csv (NaN to pandas),
and empty in summary.csv when it found none. Evolution and random search reject over-budget
candidates before scoring, so all their candidates count; TPE and NSGA-II score over-budget ones
too (Optuna cannot reject before scoring), and those count as scored but never as best.

The pure part (`SearcherTrace`, `write_comparison`, `format_summary`) takes arrays; the Tune part
(`compare_searchers`, `run_compare_stage`) runs each algorithm as a Tune experiment, or resumes it,
or reuses it when it already holds every candidate.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ems_ray.errors import InputError
from ems_ray.space import Genome

from ._scoring import CandidateScorer, pareto_front, within
from .config import Budget, CompareConfig, EvolutionConfig, TrackingConfig

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.run_context import RunContext

    from .config import SearchConfig

SUMMARY_COLUMNS = ("algorithm", "scored", "best_accuracy", "latency_ms", "energy_mj", "bitops", "seconds",
                   "candidates_per_s")
CURVE_COLUMNS = ("algorithm", "scored", "best_accuracy")
FRONT_COLUMNS = ("algorithm", "accuracy", "latency_ms")
TRACE_COSTS = ("latency_ms", "energy_mj", "bitops")
_SECONDS_FILE = "compare_seconds.json"  # in each Tune experiment folder: wall seconds over all its runs


@dataclass
class SearcherTrace:
    """Every candidate one algorithm scored, in the order scored, and the wall time it took."""

    algorithm: str
    accuracy: np.ndarray  # (n,) predicted accuracy
    costs: dict[str, np.ndarray]  # TRACE_COSTS -> (n,)
    feasible: np.ndarray  # (n,) bool: within the budget
    seconds: float

    @classmethod
    def from_metrics(cls, algorithm: str, metrics: list[dict], budget: Budget, seconds: float) -> SearcherTrace:
        """From one dict of scores per candidate (`CandidateScorer.score_one`'s keys)."""
        return cls.from_columns(algorithm, {k: [m[k] for m in metrics] for k in ("accuracy", *TRACE_COSTS)},
                                budget, seconds)

    @classmethod
    def from_columns(cls, algorithm: str, columns: dict, budget: Budget, seconds: float) -> SearcherTrace:
        """From per-candidate arrays (`scored_trials`' columns)."""
        accuracy = np.asarray(columns["accuracy"], dtype=np.float64)
        costs = {k: np.asarray(columns[k], dtype=np.float64) for k in TRACE_COSTS}
        return cls(algorithm, accuracy, costs, within(costs, budget) if len(accuracy) else np.zeros(0, bool), seconds)

    @property
    def scored(self) -> int:
        return len(self.accuracy)

    def curve(self) -> np.ndarray:
        """Best within-budget accuracy after each scored candidate; NaN before the first one."""
        masked = np.where(self.feasible, self.accuracy, -np.inf)
        best = np.maximum.accumulate(masked) if len(masked) else masked
        return np.where(np.isneginf(best), np.nan, best)

    def best_index(self) -> int | None:
        if not self.feasible.any():
            return None
        return int(np.argmax(np.where(self.feasible, self.accuracy, -np.inf)))

    def front(self) -> np.ndarray:
        """Indices of the non-dominated (accuracy, latency) within-budget candidates, by latency."""
        idx = np.flatnonzero(self.feasible)
        return idx[pareto_front(self.accuracy[idx], self.costs["latency_ms"][idx])]

    def summary(self) -> dict:
        best = self.best_index()
        row = {"algorithm": self.algorithm, "scored": self.scored,
               "best_accuracy": math.nan if best is None else float(self.accuracy[best]),
               **{k: math.nan if best is None else float(self.costs[k][best]) for k in TRACE_COSTS},
               "seconds": self.seconds, "candidates_per_s": self.scored / self.seconds if self.seconds > 0 else math.nan}
        return row


def _cell(value) -> str:
    """CSV cell: NaN as empty, floats in full (shortest round-trip) precision."""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[tuple]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)


def write_comparison(traces: list[SearcherTrace], out_dir: str | Path, budget: Budget) -> Path:
    """summary.csv, curves.csv, front.csv, curves.png and front.png into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "summary.csv", SUMMARY_COLUMNS, [tuple(t.summary()[c] for c in SUMMARY_COLUMNS) for t in traces])
    _write_csv(out / "curves.csv", CURVE_COLUMNS, [(t.algorithm, i + 1, float(v)) for t in traces
                                                  for i, v in enumerate(t.curve())])
    _write_csv(out / "front.csv", FRONT_COLUMNS, [(t.algorithm, float(t.accuracy[i]), float(t.costs["latency_ms"][i]))
                                                  for t in traces for i in t.front()])
    _plot(traces, out, budget)
    return out


def _plot(traces: list[SearcherTrace], out: Path, budget: Budget) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for t in traces:
        ax.step(np.arange(1, t.scored + 1), t.curve(), where="post", label=t.algorithm)
    ax.set(xlabel="scored candidates", ylabel="best predicted accuracy within budget",
           title=f"Best found under {budget.describe()}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for t in traces:
        (line,) = ax.step(t.costs["latency_ms"][t.front()], t.accuracy[t.front()], where="post", marker="o",
                          markersize=3, label=f"{t.algorithm} front")
        ax.scatter(t.costs["latency_ms"][t.feasible], t.accuracy[t.feasible], s=4, alpha=0.2, color=line.get_color())
    if budget.latency_ms is not None:
        ax.axvline(budget.latency_ms, color="grey", linestyle="--", linewidth=1, label="latency budget")
    ax.set(xlabel="latency (ms, BitFusion LUT)", ylabel="predicted accuracy",
           title="Within-budget candidates and accuracy/latency fronts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "front.png", dpi=120)
    plt.close(fig)


def format_summary(summary_csv: str | Path) -> str:
    """summary.csv as an aligned text table."""
    with open(summary_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    header = f"{'algorithm':<10} {'scored':>7} {'best acc':>9} {'latency':>10} {'energy':>10} {'GBitOps':>8} " \
             f"{'seconds':>8} {'cand/s':>8}"
    lines = [header]
    for r in rows:
        def num(key: str, fmt: str, scale: float = 1.0) -> str:
            return format(float(r[key]) / scale, fmt) if r[key] else "-"

        lines.append(f"{r['algorithm']:<10} {r['scored']:>7} {num('best_accuracy', '9.4f')} "
                     f"{num('latency_ms', '7.4f')} ms {num('energy_mj', '7.4f')} mJ {num('bitops', '8.3f', 1e9)} "
                     f"{num('seconds', '8.1f')} {num('candidates_per_s', '8.2f')}")
    return "\n".join(lines)


def how_to_view(out_dir: str | Path) -> str:
    """How to open the Tune experiments of a comparison."""
    tune_dir = Path(out_dir).resolve() / "tune"
    return (f"Tune results: {tune_dir}/<algorithm>\n"
            f"  tensorboard --logdir {tune_dir}\n"
            f"  python -c \"from ray.tune import ExperimentAnalysis; "
            f"print(ExperimentAnalysis('{tune_dir}/evolution').dataframe())\"\n"
            f"  or tune.Tuner.restore('{tune_dir}/<algorithm>', trainable).get_results() (ResultGrid)")


def tune_loggers(tracking: TrackingConfig | None = None) -> list:
    """The Tune result loggers the views need, passed explicitly so that
    `TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1` (which removes Tune's default loggers) leaves them on:
    CSV (progress.csv, what `ExperimentAnalysis` reads) and TensorBoard (tensorboardX); plus
    Tune's `MLflowLoggerCallback` when `tracking.mlflow` is set (`InputError` naming the extra
    when MLflow is not installed)."""
    from ray.tune.logger import CSVLoggerCallback, TBXLoggerCallback

    callbacks = [CSVLoggerCallback(), TBXLoggerCallback()]
    if tracking is not None and tracking.mlflow is not None:
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:
            raise InputError("search.tracking.mlflow is set but MLflow is not installed: install the extra, "
                             "pip install 'ems-ray[mlflow]' (or remove search.tracking.mlflow)")
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(tracking_uri=tracking.mlflow.tracking_uri,
                                              experiment_name=tracking.mlflow.experiment))
    return callbacks


def compare_searchers(scorer: CandidateScorer, budget: Budget, config: CompareConfig, out_dir: str | Path,
                      evolution: EvolutionConfig | None = None, seed: int = 0, max_concurrent: int = 1,
                      log: Callable[[str], None] = logger.info, batch: int | None = None,
                      tracking: TrackingConfig | None = None) -> list[SearcherTrace]:
    """Run each of `config.algorithms` through Tune under `out_dir/tune/<algorithm>` with
    `config.candidates` scored candidates, and write the comparison into `out_dir`. Needs Ray.

    An experiment already in `out_dir/tune` is resumed, or reused as it is when complete (logged,
    and its wall time read back); one that holds another number of candidates is an error rather
    than a silently mixed comparison."""
    from .tune import fit_tune, scored_trials

    out = Path(out_dir)
    evolution = config.evolution(evolution or EvolutionConfig())
    traces = []
    for algorithm in config.algorithms:
        folder = out / "tune" / algorithm
        existed, previous = folder.is_dir(), _read_seconds(folder)
        t0 = time.perf_counter()
        results, ran = fit_tune(scorer, budget, algorithm, evolution, config.candidates, seed, out / "tune",
                                algorithm, max_concurrent, callbacks=tune_loggers(tracking), batch=batch)
        seconds = previous + (time.perf_counter() - t0 if ran else 0.0)
        columns, _ = scored_trials(results, Genome(scorer.space))
        scored = len(columns["accuracy"])
        if scored != config.candidates:
            raise InputError(f"{folder} holds {scored} scored candidates, not {config.candidates} "
                             f"(search.compare.candidates): remove the folder to run {algorithm} again")
        (folder / _SECONDS_FILE).write_text(json.dumps({"seconds": seconds, "scored": scored}))
        trace = SearcherTrace.from_columns(algorithm, columns, budget, seconds)
        traces.append(trace)
        verb = "resumed" if existed and ran else "ran" if ran else "reused the finished Tune experiment of"
        log(f"[compare] {verb} {algorithm}: {trace.scored} candidates, {seconds:.1f} s ({folder})")
    write_comparison(traces, out, budget)
    return traces


def _read_seconds(folder: Path) -> float:
    path = folder / _SECONDS_FILE
    return float(json.loads(path.read_text())["seconds"]) if path.is_file() else 0.0


def run_compare_stage(run: RunContext, config: SearchConfig, budget: Budget | str | None = None,
                      scorer: CandidateScorer | None = None) -> Path:
    """Compare `search.compare.algorithms` on the run's predictor and LUT (as `run_search_stage`
    loads them) under `budget` (default `search.budget`); returns `<run_dir>/compare/<budget>/`."""
    from ems_ray.ray_session import ray_session

    from .stage import prepare_search

    sc = config
    budget, scorer = prepare_search(run, sc, budget, scorer)
    out = run.layout.compare(budget)
    with ray_session(run.ray):
        compare_searchers(scorer, budget, sc.compare, out, sc.evolution, run.seed, sc.max_concurrent, batch=sc.batch,
                          tracking=sc.tracking)
    return out

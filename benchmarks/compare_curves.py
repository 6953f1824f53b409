"""Best-so-far curves of a `compare-searchers` run by candidates scored and by wall time, from its Tune
experiments, for a committed report.

    python benchmarks/compare_curves.py runs/fmnist-full/compare/latency-0.15ms [more compare dirs] \
        --out results/fmnist-full/compare-paper-budget

Each `<compare dir>/tune/<algorithm>/` is read back as `compare-searchers` wrote it: every
candidate from the Parquet rows (`scored_trials`), each trial's `scored_at` from Tune's results and
the run's wall time from `compare_seconds.json`. A candidate's time is its trial's `scored_at`
less the run's start (the last `scored_at` minus the wall time, so Tune's start-up counts).
Writes `curves.csv` (algorithm, scored, seconds, best_accuracy), `curves.png` (two panels) and
`summary.md` (one row per algorithm, with the best at 1,000 / 10,000 candidates and at 60 s).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def trace(folder: Path) -> dict:
    """{algorithm, accuracy (within budget, else -inf, in asked order), seconds per candidate, wall}."""
    import pyarrow.parquet as pq
    from ray.tune import ExperimentAnalysis

    frame = ExperimentAnalysis(str(folder.resolve())).dataframe()
    done = frame.dropna(subset=["scored_at"])
    at = dict(zip(done["config/batch"].astype(int), done["scored_at"].astype(float)))
    tables = [pq.read_table(folder / "candidates" / f"batch-{b:06d}.parquet",
                            columns=["batch", "accuracy", "within_budget"]) for b in sorted(at)]
    batch = np.concatenate([t.column("batch").to_numpy() for t in tables])
    accuracy = np.concatenate([t.column("accuracy").to_numpy() for t in tables])
    ok = np.concatenate([t.column("within_budget").to_numpy() for t in tables])
    wall = json.loads((folder / "compare_seconds.json").read_text())["seconds"]
    start = max(at.values()) - wall
    return {"algorithm": folder.name, "accuracy": np.where(ok, accuracy, -np.inf),
            "seconds": np.asarray([at[b] - start for b in batch]), "wall": wall}


def best_at(t: dict, candidates: int | None = None, seconds: float | None = None) -> float:
    keep = np.arange(len(t["accuracy"])) < candidates if candidates else t["seconds"] <= seconds
    return float(np.max(t["accuracy"][keep], initial=-np.inf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("compare_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    traces = [trace(d) for folder in args.compare_dirs for d in sorted((folder / "tune").iterdir()) if d.is_dir()]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["algorithm", "scored", "seconds", "best_accuracy"])
        for t in traces:
            best = np.maximum.accumulate(t["accuracy"])
            step = max(1, len(best) // 2000)  # at most ~2,000 points per algorithm, the last included
            for i in sorted(set(range(0, len(best), step)) | {len(best) - 1}):
                writer.writerow([t["algorithm"], i + 1, f"{t['seconds'][i]:.3f}",
                                 "" if np.isneginf(best[i]) else repr(float(best[i]))])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_n, by_t) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for t in traces:
        best = np.maximum.accumulate(t["accuracy"])
        shown = np.where(np.isneginf(best), np.nan, best)
        by_n.step(np.arange(1, len(best) + 1), shown, where="post", label=t["algorithm"])
        by_t.step(t["seconds"], shown, where="post", label=t["algorithm"])
    by_n.set(xscale="log", xlabel="candidates scored", ylabel="best predicted accuracy within budget")
    by_t.set(xscale="log", xlabel="wall time (s, Tune start-up included)")
    for ax in (by_n, by_t):
        ax.grid(alpha=0.3)
    by_t.legend()
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=120)
    plt.close(fig)
    lines = ["| algorithm | scored | seconds | candidates/s | best at 1,000 | at 10,000 | at the end | at 60 s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in traces:
        n = len(t["accuracy"])
        cells = [f"{best_at(t, c):.4f}" if n >= c else "–" for c in (1000, 10000)]
        lines.append(f"| {t['algorithm']} | {n} | {t['wall']:.1f} | {n / t['wall']:.0f} | {cells[0]} | {cells[1]} | "
                     f"{best_at(t, n):.4f} | {best_at(t, seconds=60.0):.4f} |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""The short summary `ems-ray pipeline` ends with: stage times, and the measured final models."""
from __future__ import annotations

import csv
from typing import TYPE_CHECKING

from ems_ray.run_layout import RunLayout

if TYPE_CHECKING:
    from ems_ray.config import RunConfig

    from .manifest import Manifest

# final/summary.csv columns worth a line each, in this order (absent ones are left out)
_COLUMNS = ("budget", "method", "status", "predicted_accuracy", "quant_test_accuracy", "quant_test_accuracy_sd",
            "seeds", "fp_test_accuracy", "latency_ms", "energy_mj", "bitops", "search_seconds")


def _cell(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if abs(number) < 1e6 else f"{number:.3e}"


def print_outcome(cfg: RunConfig, manifest: Manifest) -> None:
    layout = RunLayout.of(cfg)
    times = ", ".join(f"{r.name} {r.seconds:.0f}s" for r in manifest.stages.values() if r.seconds is not None)
    print(f"[pipeline] stage times (last attempt): {times}")
    summary = layout.final_summary
    if summary.is_file():
        with summary.open() as f:
            rows = list(csv.DictReader(f))
        columns = [c for c in _COLUMNS if rows and c in rows[0]]
        print("[pipeline] final models (test split):")
        print("  " + "  ".join(f"{c:>18s}" for c in columns))
        for row in rows:
            print("  " + "  ".join(f"{_cell(row[c]):>18s}" for c in columns))
    report = layout.report
    if report.is_file():
        print(f"[pipeline] report: {report}")

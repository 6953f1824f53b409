"""The report of a run: `<run_dir>/report/report.md` plus PNG plots, all numbers read from the run's files.

Reads (each optional but `final/summary.csv`):

    <run_dir>/final/summary.csv, final/run.json     the final stage (Table 2 analogue)
    <run_dir>/compare/<budget>/summary.csv, curves.csv   `ems-ray compare-searchers`
    <run_dir>/pareto/<objectives>[-within-<budget>]/   `ems-ray search --pareto` (verified on read)
    <run_dir>/manifest.json                         stage timings of the pipeline runner

Writes `report.md`, `accuracy_latency.png` (Figure 4 analogue: measured test accuracy against
latency, one series per method), per compared budget `searchers_<budget>.png` and a copy of
its curves as `searchers_<budget>.csv`, and per Pareto front `pareto_<objectives>.png`: the
predicted front with the final models' measured points on it.
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ems_ray.final.methods import FINAL_METHODS
from ems_ray.run_layout import RunLayout
from ems_ray.stats import NOISE_RULE, exceeds_noise

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.run_context import RunContext

REPORT_DIR = RunLayout(Path(".")).report_dir.name
MARKERS = {name: method.marker for name, method in FINAL_METHODS.items()}


def read_csv(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _num(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt(value, spec: str = ".4f", scale: float = 1.0) -> str:
    v = _num(value)
    return "–" if v is None else format(v / scale, spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _plot_accuracy_latency(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((_num(r["latency_ms"]), _num(r["quant_test_accuracy"]),
                      _num(r.get("quant_test_accuracy_sd")) or 0.0)
                     for r in rows if r["method"] == method and r["status"] == "done")
        if pts:
            x, y, sd = zip(*pts)
            ax.errorbar(x, y, yerr=sd, marker=MARKERS.get(method, "x"), capsize=3, label=method)
    ax.set_xlabel("latency (ms, the run's latency table)")
    ax.set_ylabel("test accuracy (quantized, mean ± sd over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_curves(curves: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in dict.fromkeys(r["algorithm"] for r in curves):
        pts = sorted((_num(r["scored"]), _num(r["best_accuracy"])) for r in curves if r["algorithm"] == algo)
        ax.plot(*zip(*pts), label=algo)
    ax.set_xscale("log")
    ax.set_xlabel("candidates scored")
    ax.set_ylabel("best predicted accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _mean_sd(row: dict, column: str) -> str:
    sd = _num(row.get(f"{column}_sd"))
    return _fmt(row[column]) + ("" if sd is None else f" ± {sd:.4f}")


def _seeds(row: dict) -> int:
    n = _num(row.get("seeds"))
    return 1 if n is None else int(n)  # summaries from before per-seed measurement: one each


def reference_method(rows: list[dict]) -> str | None:
    """What a budget's methods are compared with: `ems` (the paper's joint search) if it was measured,
    else the first measured method."""
    done = [r["method"] for r in rows if r["status"] == "done" and _num(r.get("quant_test_accuracy")) is not None]
    return "ems" if "ems" in done else (done[0] if done else None)


def noise_mark(row: dict, ref: dict) -> str:
    """`row`'s mean quantized test accuracy minus `ref`'s, and whether that exceeds the noise (`NOISE_RULE`)."""
    delta = _num(row["quant_test_accuracy"]) - _num(ref["quant_test_accuracy"])
    verdict = exceeds_noise(_num(row["quant_test_accuracy"]), _num(row.get("quant_test_accuracy_sd")), _seeds(row),
                            _num(ref["quant_test_accuracy"]), _num(ref.get("quant_test_accuracy_sd")), _seeds(ref))
    label = {True: "**beyond noise**", False: "within noise", None: "no spread: 1 seed"}[verdict]
    return f"{delta:+.4f} ({label})"


def _final_section(rows: list[dict]) -> list[str]:
    lines = []
    for budget in dict.fromkeys(r["budget"] for r in rows):
        budget_rows = [r for r in rows if r["budget"] == budget]
        ref_name = reference_method(budget_rows)
        ref = next((r for r in budget_rows if r["method"] == ref_name), None)
        header = ["method", "predicted acc", "test acc (quant)", f"Δ vs {ref_name or '–'}", "test acc (float)",
                  "seeds", "latency (ms)", "energy (mJ)", "BitOps (G)", "search (s)"]
        lines += ["", f"### Budget `{budget}`", ""]
        body = []
        for r in budget_rows:
            if r["status"] != "done":
                body.append([r["method"], f"*{r['status']}*", *["–"] * 8])
                continue
            delta = "reference" if r is ref else noise_mark(r, ref)
            body.append([r["method"], _fmt(r["predicted_accuracy"]), _mean_sd(r, "quant_test_accuracy"), delta,
                         _mean_sd(r, "fp_test_accuracy"), str(_seeds(r)), _fmt(r["latency_ms"], ".4g"),
                         _fmt(r["energy_mj"], ".4g"), _fmt(r["bitops"], ".4g", 1e9), _fmt(r["search_seconds"], ".1f")])
        lines += _table(header, body)
    return lines + ["", "Test accuracies are mean ± sd over each sub-net's fine-tune seeds (`seeds` column; per-seed "
                        "values in `final/summary.csv`). Δ: the method's mean quantized test accuracy minus the "
                        f"reference's, same budget; {NOISE_RULE}."]


def _runtime_section(rows: list[dict]) -> list[str]:
    """Measured hardware targets: the table's predicted latency beside the ONNX model's measured one."""
    done = [r for r in rows if r["status"] == "done" and _num(r.get("runtime_latency_ms")) is not None]
    if not done:
        return []
    body = []
    for r in done:
        predicted, measured = _num(r["latency_ms"]), _num(r["runtime_latency_ms"])
        body.append([r["budget"], r["method"], _fmt(predicted, ".4g"), _fmt(measured, ".4g"),
                     _fmt(100 * (predicted - measured) / measured, "+.1f"), _mean_sd(r, "onnx_test_accuracy"),
                     _mean_sd(r, "quant_test_accuracy")])
    return ["", "## ONNX Runtime: predicted against measured latency", "",
            "Each final model exported as an integer ONNX graph and timed in ONNX Runtime as the latency table "
            "was (same threads, batch, statistic); accuracy of the ONNX model itself on the test split.", "",
            *_table(["budget", "method", "predicted (ms)", "measured (ms)", "error (%)", "ONNX test acc",
                     "fake-quant test acc"], body)]


def _gap_section(rows: list[dict]) -> list[str]:
    done = [r for r in rows if r["status"] == "done" and _num(r["quant_test_accuracy"]) is not None]
    if not done:
        return []
    gaps = [_num(r["predicted_accuracy"]) - _num(r["quant_test_accuracy"]) for r in done]
    body = [[r["budget"], r["method"], _fmt(g, "+.4f")] for r, g in zip(done, gaps)]
    mean_abs = sum(abs(g) for g in gaps) / len(gaps)
    return ["", "## Predicted against measured", "",
            f"Predicted (validation-trained predictor) minus measured test accuracy; mean |gap| {mean_abs:.4f} "
            f"over {len(gaps)} sub-nets.", "", *_table(["budget", "method", "gap"], body)]


def _marginal_cost(rows: list[dict]) -> list[str]:
    ems = [_num(r["search_seconds"]) for r in rows if r["method"] == "ems" and r["status"] == "done"]
    ems = [s for s in ems if s is not None]
    if not ems:
        return []
    return ["", f"**Marginal search cost per new budget** (joint search, predictor and LUT already built): "
                f"{sum(ems) / len(ems):.2f} s on average over {len(ems)} budget(s) "
                f"(min {min(ems):.2f} s, max {max(ems):.2f} s)."]


def _compare_section(run_dir: Path, out: Path) -> tuple[list[str], list[str]]:
    lines, images = [], []
    for summary in sorted((run_dir / "compare").glob("*/summary.csv")):
        slug = summary.parent.name
        rows = read_csv(summary)
        header = ["algorithm", "scored", "best predicted acc", "latency (ms)", "energy (mJ)", "BitOps (G)",
                  "seconds", "candidates/s"]
        body = [[r["algorithm"], r["scored"], _fmt(r["best_accuracy"]), _fmt(r["latency_ms"], ".4g"),
                 _fmt(r["energy_mj"], ".4g"), _fmt(r["bitops"], ".4g", 1e9), _fmt(r["seconds"], ".1f"),
                 _fmt(r["candidates_per_s"], ".1f")] for r in rows]
        lines += ["", f"### Searchers, budget `{slug}`", "", *_table(header, body)]
        curves = summary.parent / "curves.csv"
        if curves.is_file():
            shutil.copyfile(curves, out / f"searchers_{slug}.csv")
            _plot_curves(read_csv(curves), out / f"searchers_{slug}.png", slug)
            images.append(f"searchers_{slug}.png")
            lines += ["", f"![searchers {slug}](searchers_{slug}.png)"]
    return (["", "## Searchers compared", *lines] if lines else []), images


def _front_at(front: dict, objectives, row: dict) -> str:
    """The front's best predicted accuracy at no more than `row`'s cost on each of its cost axes."""
    import numpy as np

    ok = np.ones(len(front["accuracy"]), dtype=bool)
    for cost in objectives.costs:
        ok &= front[cost] <= _num(row[cost])
    return _fmt(front["accuracy"][ok].max()) if ok.any() else "–"


def _pareto_section(run_dir: Path, out: Path, rows: list[dict]) -> list[str]:
    """Each front of the run: its figures, a plot with the final models' measured points, and per
    final model the front's best predicted accuracy at that model's costs."""
    from ems_ray.search.pareto import FRONT_PARQUET, front_png, read_front

    lines = []
    done = [r for r in rows if r["status"] == "done" and _num(r.get("quant_test_accuracy")) is not None]
    for parquet in sorted(RunLayout(run_dir).pareto_dir.glob(f"*/{FRONT_PARQUET}")):
        front = read_front(parquet.parent)
        objectives, info, slug = front.objectives, front.info, parquet.parent.name
        measured = []
        for method in dict.fromkeys(r["method"] for r in done):
            mine = [r for r in done if r["method"] == method]
            measured.append((f"{method} (test, quantized)", MARKERS.get(method, "x"),
                             {k: [_num(r[k if k != "accuracy" else "quant_test_accuracy"]) for r in mine]
                              for k in objectives.names}))
        image = f"pareto_{slug}.png"
        (out / image).write_bytes(front_png(front.columns, objectives, front.budget, measured,
                                            title=f"front {slug}"))
        ref = ", ".join(f"{k} {v:.4g}" for k, v in info["reference_point"].items())
        lines += ["", f"### Front `{slug}`", "",
                  f"{info['algorithm']}, {info['scored']} candidates scored in {info['seconds']:.1f} s: "
                  f"**{info['points']} points**, hypervolume {info['hypervolume']:.4g} "
                  f"({info['hypervolume_normalized']:.4f} of the box to the reference point {ref})"
                  + (f"; hard limits {info['budget']}" if info["budget"] else "") + ".", "",
                  f"![front {slug}]({image})"]
        if done:
            body = [[r["budget"], r["method"], _fmt(r["predicted_accuracy"]), _mean_sd(r, "quant_test_accuracy"),
                     _front_at(front.columns, objectives, r)] for r in done]
            lines += ["", *_table(["budget", "method", "predicted acc", "test acc (quant)",
                                   "front's best predicted at ≤ its " + ", ".join(objectives.costs)], body)]
    return ["", "## Pareto fronts", *lines] if lines else []


def _timings_section(run_dir: Path) -> list[str]:
    path = RunLayout(run_dir).manifest
    if not path.is_file():
        return []
    try:
        stages = json.loads(path.read_text()).get("stages", [])
    except (json.JSONDecodeError, AttributeError):
        return ["", "## Stage timings", "", f"(`{path.name}` could not be read)"]
    body = [[str(s.get("name", "?")), str(s.get("status", "?")), _fmt(s.get("seconds"), ".1f")] for s in stages]
    return ["", "## Stage timings", "", *_table(["stage", "status", "seconds"], body)]


def build_report(run_dir: Path, config_name: str) -> Path:
    """Write `<run_dir>/report/` from the run's files; returns the report.md path."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    summary = layout.final_summary
    if not summary.is_file():
        raise FileNotFoundError(f"report: {summary} not found; run the final stage first (run_final_stage)")
    out = layout.report_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = read_csv(summary)
    info_path = layout.final_info
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    data = info.get("data", {})
    sha = str(info.get("supernet_sha256", "?"))[:16]
    lines = [f"# Report: {info.get('name', config_name)}", "",
             f"- search space: `{info.get('space', '?')}`; super network sha256 `{sha}`",
             f"- data: {data.get('name', '?')}, train {data.get('train', '?')} / val {data.get('val', '?')} / "
             f"test {data.get('test', '?')} images; measured accuracies are on the **test** split",
             "", "## Final models (Table 2 analogue)"]
    lines += _final_section(rows)
    lines += _marginal_cost(rows)
    if any(r["status"] == "done" for r in rows):
        _plot_accuracy_latency(rows, out / "accuracy_latency.png")
        lines += ["", "## Accuracy against latency (Figure 4 analogue)", "",
                  "![accuracy vs latency](accuracy_latency.png)"]
    lines += _runtime_section(rows)
    lines += _gap_section(rows)
    compare, _ = _compare_section(run_dir, out)
    lines += compare
    lines += _pareto_section(run_dir, out, rows)
    lines += _timings_section(run_dir)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_report_stage(run: RunContext) -> Path:
    """The report of `run`'s run directory; returns `<run_dir>/report/report.md`'s folder."""
    path = build_report(run.run_dir, run.name)
    logger.info(f"[report] wrote {path}")
    return path.parent

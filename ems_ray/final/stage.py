"""The final-model stage: for every budget and method, pick a sub-net, then measure it on the test split.

    <run_dir>/final/<budget>/<method>.json   method, budget, predicted accuracy, measured accuracy per
                                             seed (`per_seed`) and their mean ± sd, LUT costs, search and
                                             measure seconds, gene row, inputs fingerprint
    <run_dir>/final/<budget>/<method>.yaml   the sub-net (`SubnetConfig`)
    <run_dir>/final/summary.csv              one row per (budget, method)
    <run_dir>/final/run.json                 config name, super-network hash, split sizes
    <run_dir>/final/predictor-no-transfer/   the quantization-aware predictor trained without transfer

Takes the run's shared settings (`RunContext`), its `final` section and the sections its results
depend on: `search` (the joint search and the baselines' evolution), `predictor` (the no-transfer
baseline is trained with it) and the run's quantization recipe `quant` (unless `final.recipe`).
"""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ems_ray.artifacts import file_sha256, json_digest, write_atomic
from ems_ray.console import Progress
from ems_ray.errors import InputError
from ems_ray.hardware import run_cost_table
from ems_ray.run_layout import RunLayout
from ems_ray.search import Budget, CandidateScorer, InfeasibleBudgetError, SearchResult, check_feasible
from ems_ray.space import Genome
from ems_ray.stats import mean_sd

from ._measure import measure_all
from .methods import FINAL_METHODS

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable
    from ems_ray.predictor import AccuracyPredictor
    from ems_ray.predictor.config import PredictorConfig
    from ems_ray.quant.config import QuantRecipe
    from ems_ray.run_context import RunContext
    from ems_ray.search.config import SearchConfig
    from ems_ray.space import SearchSpace

    from .config import FinalConfig

FINAL_DIR = RunLayout(Path(".")).final_dir.name
NO_TRANSFER_DIR = "predictor-no-transfer"
# the accuracies are means over the measurement seeds; `quant_test_accuracies` lists each seed's
SUMMARY_COLUMNS = ("budget", "method", "status", "predicted_accuracy", "predicted_accuracy_quant",
                   "quant_test_accuracy", "quant_test_accuracy_sd", "fp_test_accuracy", "fp_test_accuracy_sd",
                   "seeds", "quant_test_accuracies", "latency_ms", "energy_mj", "bitops", "macs",
                   "search_seconds", "measure_seconds", "genes", "runtime_latency_ms", "onnx_test_accuracy",
                   "onnx_test_accuracy_sd")
MEASURING = "measuring"  # chosen, some seeds still to measure


def no_transfer_predictor(run: RunContext, predictor: PredictorConfig, space: SearchSpace, fp: AccuracyPredictor
                          ) -> tuple[AccuracyPredictor, Path]:
    """The quantization-aware predictor trained from scratch on the run's collected data, reusing the
    run's FP predictor (only the quant phase differs). Retrained only when the data fingerprint
    (rows, predictor settings, space, seed) changes."""
    from ems_ray.predictor import load_collected, load_predictor, save_predictors, train_predictors
    from ems_ray.predictor.stage import stage_fingerprint

    pc = predictor.model_copy(update={"transfer": False})
    layout = run.layout
    out = layout.final_dir / NO_TRANSFER_DIR
    data = load_collected(pc.data_dir or layout.collect_dir, space, pc.quant_scheme)
    fingerprint = stage_fingerprint(data, pc, space, run.seed)
    metrics = out / "metrics.json"
    if not (metrics.is_file() and (out / "quant.pt").is_file()
            and json.loads(metrics.read_text()).get("fingerprint") == fingerprint):
        logger.info(f"[final] training the quantization-aware predictor without transfer ({len(data.quant)} rows)")
        trained = train_predictors(data, pc, space, run.seed, fp_model=fp.model)
        if trained.quant is None:
            raise InputError(f"no-transfer: too few quantized rows collected ({len(data.quant)}); "
                             "run `ems-ray collect quant` first")
        save_predictors(trained, out, {"fingerprint": fingerprint, "data": data.summary(), "transfer": False})
    return load_predictor(out / "quant.pt", space, "quant"), out / "quant.pt"


class _Inputs:
    """What a run's final results depend on, loaded once: LUT, predictors, super network, hashes."""

    def __init__(self, run: RunContext, final: FinalConfig, search: SearchConfig, predictor: PredictorConfig,
                 quant: QuantRecipe, table: CostTable):
        from ems_ray.predictor import load_run_predictors
        from ems_ray.space import space_fingerprint
        from ems_ray.supernet.checkpoint import read_supernet_file

        layout = run.layout
        self.run, self.final, self.search_config = run, final, search
        self.space = run.search_space()
        self.table = table
        self.supernet_path = layout.supernet
        blob = read_supernet_file(self.supernet_path)  # fails clearly before any search
        if blob["space_fingerprint"] != space_fingerprint(self.space):
            raise InputError(f"{self.supernet_path} was trained for another search space than '{self.space.name}'")
        self.supernet_sha256 = file_sha256(self.supernet_path)
        fp, quant_predictor = load_run_predictors(run.run_dir, self.space)
        if quant_predictor is None:
            raise FileNotFoundError(f"final: {layout.predictor('quant')} does not exist; the joint search and "
                                    "the baselines need the quantization-aware predictor (ems-ray train-predictor)")
        self.fp = CandidateScorer(fp, self.table)
        self.quant = CandidateScorer(quant_predictor, self.table)
        self.hashes = {kind: file_sha256(layout.predictor(kind)) for kind in ("fp", "quant")}
        self.no_transfer: CandidateScorer | None = None
        if "no-transfer" in final.methods:
            no_transfer, path = no_transfer_predictor(run, predictor, self.space, fp)
            self.no_transfer = CandidateScorer(no_transfer, self.table)
            self.hashes["no-transfer"] = file_sha256(path)
        self.recipe = final.recipe or quant

    def key(self, method: str, budget: Budget) -> dict:
        """The inputs a (budget, method) result was computed from; a result is reused only when equal."""
        run, entry = self.run, FINAL_METHODS[method]
        return {"supernet_sha256": self.supernet_sha256, "predictors": {p: self.hashes[p] for p in entry.predictors},
                "lut": json_digest(self.table.metadata()), "budget": budget.describe(), "seed": run.seed,
                "recipe": self.recipe.model_dump(mode="json"), "data": run.data.model_dump(mode="json"),
                "evolution": self.search_config.evolution.model_dump(mode="json"),
                "measure_seeds": self.final.measure_seeds(run.seed), **entry.settings(self.final)}

    def choose(self, method: str, budget: Budget) -> SearchResult:
        return FINAL_METHODS[method].choose(self, budget)


def _record(method: str, budget: Budget, key: dict, result: SearchResult, inputs: _Inputs) -> dict:
    scores = result.scores
    genes = Genome(inputs.space).canonical(result.genes)[0]  # inactive slots zeroed: equal nets, equal rows
    return {
        "method": method, "budget": budget.describe(), "status": MEASURING, "inputs": key, "per_seed": [],
        "predicted_accuracy": scores["accuracy"],
        "predicted_accuracy_quant": float(inputs.quant.accuracy(genes)[0]),
        **{k: scores[k] for k in ("latency_ms", "energy_mj", "bitops", "macs")},
        "search_seconds": result.seconds, "scored": result.scored, "genes": genes.tolist(),
        "search": {k: v for k, v in result.to_json().items() if k not in ("genes", "scores", "budget")},
    }


def _write_result(out: Path, record: dict, inputs: _Inputs) -> None:
    slug_dir = out / Budget.parse(record["budget"]).slug()
    if record["status"] != "infeasible":
        write_atomic(slug_dir / f"{record['method']}.yaml", Genome(inputs.space).to_config(record["genes"]).to_yaml())
    write_atomic(slug_dir / f"{record['method']}.json", json.dumps(record, indent=1, sort_keys=True))


def _read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def measured_mean_sd(per_seed: list[dict]) -> dict:
    """A sub-net's result from its per-seed measurements: accuracies as mean and sd, seconds summed."""
    quant = mean_sd([m["quant_test_accuracy"] for m in per_seed])
    fp = mean_sd([m["fp_test_accuracy"] for m in per_seed])
    return {"quant_test_accuracy": quant["mean"], "quant_test_accuracy_sd": quant["sd"],
            "fp_test_accuracy": fp["mean"], "fp_test_accuracy_sd": fp["sd"], "seeds": len(per_seed),
            "finetune_seconds": sum(m.get("finetune_seconds", 0.0) for m in per_seed),
            "measure_seconds": sum(m.get("measure_seconds", 0.0) for m in per_seed),
            "device": per_seed[0].get("device"), **_runtime_mean_sd(per_seed)}


def _runtime_mean_sd(per_seed: list[dict]) -> dict:
    """Measured-target runs: ONNX Runtime latency (median over seeds) and ONNX test accuracy (mean, sd)."""
    if "runtime_latency_ms" not in per_seed[0]:
        return {}
    onnx = mean_sd([m["onnx_test_accuracy"] for m in per_seed])
    return {"runtime_latency_ms": float(np.median([m["runtime_latency_ms"] for m in per_seed])),
            "onnx_test_accuracy": onnx["mean"], "onnx_test_accuracy_sd": onnx["sd"]}


def write_summary(out: Path, records: list[dict]) -> Path:
    """`summary.csv`: one row per (budget, method), the numbers the report reads."""
    lines = []
    for r in records:
        row = {c: r.get(c, "") for c in SUMMARY_COLUMNS}
        row["genes"] = " ".join(map(str, r.get("genes", [])))
        row["quant_test_accuracies"] = " ".join(str(m["quant_test_accuracy"]) for m in r.get("per_seed", []))
        row["quant_test_accuracy_sd"] = "" if r.get("quant_test_accuracy_sd") is None else r["quant_test_accuracy_sd"]
        row["fp_test_accuracy_sd"] = "" if r.get("fp_test_accuracy_sd") is None else r["fp_test_accuracy_sd"]
        row["onnx_test_accuracy_sd"] = "" if r.get("onnx_test_accuracy_sd") is None else r["onnx_test_accuracy_sd"]
        lines.append(row)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS)
    writer.writeheader()
    writer.writerows(lines)
    return write_atomic(out / "summary.csv", text.getvalue())


def _write_run_info(out: Path, inputs: _Inputs) -> None:
    from ems_ray.data import build_splits

    run = inputs.run
    splits = build_splits(run.data)
    info = {"name": run.name, "space": inputs.space.name, "supernet_sha256": inputs.supernet_sha256,
            "data": {"name": run.data.name, "train": len(splits.train), "val": len(splits.val),
                     "test": len(splits.test)},
            "recipe": inputs.recipe.model_dump(mode="json"), "seed": run.seed}
    write_atomic(out / "run.json", json.dumps(info, indent=1, sort_keys=True))


def _complete(out: Path, record: dict, inputs: _Inputs) -> None:
    """Every seed measured: the record's mean ± sd, status done, written."""
    record.update(measured_mean_sd(record["per_seed"]), status="done")
    sd = record["quant_test_accuracy_sd"]
    logger.info("%s %s: test accuracy %.4f%s quantized over %d seeds", record["budget"], record["method"],
             record["quant_test_accuracy"], "" if sd is None else f" ± {sd:.4f}", record["seeds"])
    _write_result(out, record, inputs)


def run_final_stage(run: RunContext, config: FinalConfig, *, search: SearchConfig, predictor: PredictorConfig,
                    quant: QuantRecipe, use_ray: bool = True, force: bool = False) -> Path:
    """Search (or reuse) and measure every (budget, method) of `config` (the `final` section);
    returns `<run_dir>/final`.

    Budgets are checked against the LUT first, so an infeasible one fails before any work. A result
    whose inputs (super network, predictors, LUT, budget, recipe, data, seed, search settings) are
    unchanged is kept unless `force`; the others are searched here and measured as Ray tasks
    (`use_ray`) or in this process, once per seed of `final.seeds` (one task each). A result
    interrupted between seeds keeps its sub-net and measures only the seeds it lacks.
    """
    fc = config
    budgets = fc.parsed_budgets()
    if not budgets:
        raise InputError("final.budgets: empty; give at least one budget, e.g. [latency=0.5ms]")
    space = run.search_space()
    if "sequential" in fc.methods:
        fc.sequential.check_space(space.bits.as_tuple())
    table = run_cost_table(run, save=False)  # an infeasible budget fails before anything is written
    for budget in budgets:
        check_feasible(table, budget)
    inputs = _Inputs(run, fc, search, predictor, quant, table)
    out = run.layout.final_dir
    _write_run_info(out, inputs)

    seeds = fc.measure_seeds(run.seed)
    records: dict[tuple[str, str], dict] = {}
    jobs: list[tuple[tuple[str, str, int], dict]] = []
    for budget in budgets:
        for method in fc.methods:
            key = inputs.key(method, budget)
            saved = _read_result(out / budget.slug() / f"{method}.json")
            if not force and saved is not None and saved.get("inputs") == key and saved["status"] != MEASURING:
                logger.info(f"[final] {budget.describe()} {method}: up to date, skipped")
                records[budget.slug(), method] = saved
                continue
            if not force and saved is not None and saved.get("inputs") == key:
                record = saved  # interrupted while measuring: the same sub-net, the seeds it lacks
                logger.info("%s %s: %d of %d seeds measured before; measuring the rest", record["budget"], method,
                         len(record["per_seed"]), len(seeds))
            else:
                try:
                    result = inputs.choose(method, budget)
                except InfeasibleBudgetError as exc:
                    record = {"method": method, "budget": budget.describe(), "status": "infeasible", "inputs": key,
                              "message": str(exc)}
                    logger.info(f"[final] {budget.describe()} {method}: infeasible: {exc}")
                    _write_result(out, record, inputs)
                    records[budget.slug(), method] = record
                    continue
                record = _record(method, budget, key, result, inputs)
                logger.info(f"[final] {budget.describe()} {method}: predicted {record['predicted_accuracy']:.4f}, "
                            f"{record['latency_ms']:.4g} ms, searched in {record['search_seconds']:.1f} s")
            records[budget.slug(), method] = record
            measured = {m["seed"] for m in record["per_seed"]}
            todo = [seed for seed in seeds if seed not in measured]
            if not todo:  # every seed was measured before the interruption
                _complete(out, record, inputs)
            subnet = Genome(space).to_config(record["genes"])
            runtime = ({"hardware": run.hardware.model_dump(mode="json")} if run.hardware.measured else {})
            jobs += [((budget.slug(), method, seed), {
                "supernet_path": inputs.supernet_path, "subnet": subnet, "recipe": inputs.recipe, "data": run.data,
                "seed": seed, **runtime, **({"export_path": out / budget.slug() / f"{method}-seed{seed}.onnx"}
                                            if runtime else {})}) for seed in todo]

    def finished(job_key: tuple[str, str, int], metrics: dict) -> None:
        slug, method, seed = job_key
        record = records[slug, method]
        record["per_seed"] = sorted([*record["per_seed"], {"seed": seed, **metrics}], key=lambda m: m["seed"])
        logger.info("[final] %s %s seed %d: test accuracy %.4f quantized, %.4f float (%.0f s)", record["budget"],
                    method, seed, metrics["quant_test_accuracy"], metrics["fp_test_accuracy"],
                    metrics["measure_seconds"])
        progress.add(1)
        if len(record["per_seed"]) == len(seeds):
            _complete(out, record, inputs)
        else:
            _write_result(out, record, inputs)  # a killed run keeps the seeds measured so far

    with Progress("[final] fine-tuned and measured", len(jobs), unit="models", every_s=300.0) as progress:
        if jobs and use_ray:
            from ems_ray.ray_session import ray_session

            with ray_session(run.ray):
                measure_all(jobs, fc.resources, True, finished)
        else:
            measure_all(jobs, fc.resources, False, finished)
    write_summary(out, [records[b.slug(), m] for b in budgets for m in fc.methods])
    logger.info(f"[final] wrote {out}")
    return out

"""The predictor stage of a run: collected Parquet in, `<run_dir>/predictor/` out.

    <run_dir>/predictor/fp.pt          FP predictor
    <run_dir>/predictor/quant.pt       quantization-aware predictor (absent without quantized data)
    <run_dir>/predictor/metrics.json   metrics (early-stopping `val_*`, reported `test_*`), the test
                                       metrics' mean ± sd over `report_seeds` trainings (`report`),
                                       settings, data summary, fingerprint

Takes the run's shared settings (`RunContext`: space, seed, Ray) and its `predictor` section.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ems_ray.artifacts import copy_artifact, json_digest, remove_artifact
from ems_ray.run_layout import RunLayout

from ._data import CollectedData, load_collected
from ._files import (
    PREDICTOR_FILES, RECOVER, AccuracyPredictor, PredictorFileError, load_predictor, read_predictor_summary,
    save_predictors, write_predictor_summary,
)
from ._training import metrics_over_seeds, train_predictors
from .config import PredictorConfig, apply_overrides

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.run_context import RunContext
    from ems_ray.space import SearchSpace


def load_run_predictors(run_dir: str | Path, space: SearchSpace | None = None
                        ) -> tuple[AccuracyPredictor, AccuracyPredictor | None]:
    """(fp, quant or None) predictors of a run, checked against `space` when given."""
    layout = RunLayout(run_dir)
    quant = layout.predictor("quant")
    return (load_predictor(layout.predictor("fp"), space, "fp"),
            load_predictor(quant, space, "quant") if quant.is_file() else None)


def stage_fingerprint(data: CollectedData, config: PredictorConfig, space: SearchSpace, seed: int) -> str:
    """What makes two predictor runs the same (data rows, settings, space, seed)."""
    from ems_ray.space import space_fingerprint

    keep = {"data": data.fingerprint(), "space": space_fingerprint(space), "seed": seed,
            "config": config.model_dump(mode="json", exclude={"data_dir", "device", "threads"})}
    return json_digest(keep)


def _is_done(layout: RunLayout, fingerprint: str, space: SearchSpace) -> bool:
    """The folder holds the predictors of this fingerprint and they read back and verify; a damaged
    file fails (PredictorFileError, the file left as it is) rather than being trained over."""
    summary_file = layout.predictor_metrics
    if not summary_file.is_file():
        return False
    summary = read_predictor_summary(summary_file)
    if summary.get("fingerprint") != fingerprint:
        return False
    if not layout.predictor("fp").is_file() or ((summary.get("metrics") or {}).get("quant")
                                                and not layout.predictor("quant").is_file()):
        return False
    load_run_predictors(layout.root, space)
    return True


def _log_epoch(every: int):
    def log(record: dict, _snapshot) -> None:
        if record["epoch"] % every == 0:
            logger.info(f"[predictor] {record['phase']:5s} epoch {record['epoch']:4d} loss {record['train_loss']:.4f} "
                        f"val rmse {record['val_rmse']:.4f} tau {record['val_kendall_tau']:.3f} "
                        f"pairwise {record['val_pairwise_accuracy']:.3f} (best epoch {record['best_epoch']})")
    return log


def _pm(stat: dict, spec: str) -> str:
    sd = stat["sd"]
    return format(stat["mean"], spec) + ("" if sd is None else f" ± {sd:{spec}}")


def describe_report(summary: dict) -> list[str]:
    """One line per predictor: test metrics (mean ± sd over the report's seeds), then the saved one's."""
    lines = []
    report = summary.get("report") or {}
    for kind in ("fp", "quant"):
        spread, saved = report.get(kind), (summary.get("metrics") or {}).get(kind)
        if not spread or not saved:
            continue
        lines.append(
            f"{kind}: test rmse {_pm(spread['test_rmse'], '.4f')}, "
            f"kendall tau {_pm(spread['test_kendall_tau'], '.3f')}, "
            f"pairwise accuracy {_pm(spread['test_pairwise_accuracy'], '.3f')} (mean ± sd over "
            f"{len(report['seeds'])} seeds, {saved['test_architectures']} test architectures, never trained or "
            f"early-stopped on); saved predictor (seed {report['seeds'][0]}): test pairwise "
            f"{saved['test_pairwise_accuracy']:.3f}, early-stopping split {saved['val_pairwise_accuracy']:.3f}")
    return lines


def run_predictor_stage(run: RunContext, config: PredictorConfig, force: bool = False) -> Path:
    """Train (or Tune-search) the predictors of a run into `<run_dir>/predictor/`.

    Skipped when `metrics.json` there records the same data, settings, space and seed and the
    predictor files verify, unless `force`; collecting more rows or changing the `predictor`
    section retrains.
    """
    import torch

    pc = config
    space = run.search_space()
    layout = run.layout
    out = layout.predictor_dir
    data = load_collected(pc.data_dir or layout.collect_dir, space, pc.quant_scheme)
    for note in data.notes:
        logger.info(f"[predictor] note: {note}")
    fingerprint = stage_fingerprint(data, pc, space, run.seed)
    metrics_file = layout.predictor_metrics
    if not force and _is_done(layout, fingerprint, space):
        logger.info(f"[predictor] {out} is up to date with the collected data: stage already done")
        return out
    if pc.threads:
        torch.set_num_threads(pc.threads)
    summary = data.summary()
    logger.info(f"[predictor] {summary['fp']['rows']} FP rows, {summary['quant']['rows']} quantized rows; "
                f"mode {pc.mode}")
    t0 = time.perf_counter()
    extra = {"fingerprint": fingerprint, "data": summary, "seed": run.seed, "mode": pc.mode,
             "config": pc.model_dump(mode="json")}
    if pc.mode == "single":
        trained = train_predictors(data, pc, space, run.seed, on_epoch=_log_epoch(10))
        report = metrics_over_seeds(data, pc, space, run.seed, first=trained.metrics())
        save_predictors(trained, out, {**extra, "report": report, "seconds": round(time.perf_counter() - t0, 1)})
    else:
        from ems_ray.ray_session import ray_session

        from .ray_tune import tune_predictors

        with ray_session(run.ray):
            # named by the fingerprint: re-running resumes an interrupted search of the same data and
            # settings, while new data or settings start a fresh one
            best = tune_predictors(data, pc, space, run.seed, storage=out / "tune", name=f"{run.name}-{fingerprint}")
        for f in PREDICTOR_FILES:
            if (best.checkpoint_dir / f).is_file():
                copy_artifact(best.checkpoint_dir / f, out / f, "predictor file", PredictorFileError, RECOVER)
            else:
                remove_artifact(out / f)
        summary_json = read_predictor_summary(metrics_file)
        # the spread of the chosen settings, retrained here with the further seeds (trials ran one each)
        best_config = PredictorConfig.model_validate(apply_overrides(pc.model_dump(mode="json"), best.trial_config))
        report = metrics_over_seeds(data, best_config, space, run.seed, first=summary_json["metrics"])
        summary_json.update(extra, report=report, seconds=round(time.perf_counter() - t0, 1),
                            best_trial=best.trial_config, trials=best.trials)
        write_predictor_summary(metrics_file, summary_json)
    for line in describe_report(read_predictor_summary(metrics_file)):
        logger.info(line)
    logger.info(f"[predictor] wrote {out}")
    return out

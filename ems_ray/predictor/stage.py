"""The predictor stage of a run: collected Parquet in, `<run_dir>/predictor/` out.

    <run_dir>/predictor/fp.pt          FP predictor
    <run_dir>/predictor/quant.pt       quantization-aware predictor (absent without quantized data)
    <run_dir>/predictor/metrics.json   held-out metrics, settings, data summary, fingerprint
"""
from __future__ import annotations

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
from ._training import train_predictors
from .config import PredictorConfig

if TYPE_CHECKING:
    from ems_ray.config import RunConfig
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
            print(f"[predictor] {record['phase']:5s} epoch {record['epoch']:4d} loss {record['train_loss']:.4f} "
                  f"val rmse {record['val_rmse']:.4f} tau {record['val_kendall_tau']:.3f} "
                  f"pairwise {record['val_pairwise_accuracy']:.3f} (best epoch {record['best_epoch']})", flush=True)
    return log


def run_predictor_stage(cfg: RunConfig, force: bool = False) -> Path:
    """Train (or Tune-search) the predictors of a run into `<run_dir>/predictor/`.

    Skipped when `metrics.json` there records the same data, settings, space and seed and the
    predictor files verify, unless `force`; collecting more rows or changing the `predictor`
    section retrains.
    """
    import torch

    pc = cfg.predictor
    space = cfg.search_space()
    layout = RunLayout.of(cfg)
    out = layout.predictor_dir
    data = load_collected(pc.data_dir or layout.collect_dir, space, pc.quant_scheme)
    for note in data.notes:
        print(f"[predictor] note: {note}")
    fingerprint = stage_fingerprint(data, pc, space, cfg.seed)
    metrics_file = layout.predictor_metrics
    if not force and _is_done(layout, fingerprint, space):
        print(f"[predictor] {out} is up to date with the collected data: stage already done")
        return out
    if pc.threads:
        torch.set_num_threads(pc.threads)
    summary = data.summary()
    print(f"[predictor] {summary['fp']['rows']} FP rows, {summary['quant']['rows']} quantized rows; mode {pc.mode}")
    t0 = time.perf_counter()
    extra = {"fingerprint": fingerprint, "data": summary, "seed": cfg.seed, "mode": pc.mode,
             "config": pc.model_dump(mode="json")}
    if pc.mode == "single":
        trained = train_predictors(data, pc, space, cfg.seed, on_epoch=_log_epoch(10))
        save_predictors(trained, out, {**extra, "seconds": round(time.perf_counter() - t0, 1)})
    else:
        from ems_ray.ray_session import ray_session

        from .ray_tune import tune_predictors

        with ray_session(cfg.ray):
            # named by the fingerprint: re-running resumes an interrupted search of the same data and
            # settings, while new data or settings start a fresh one
            best = tune_predictors(data, pc, space, cfg.seed, storage=out / "tune", name=f"{cfg.name}-{fingerprint}")
        for f in PREDICTOR_FILES:
            if (best.checkpoint_dir / f).is_file():
                copy_artifact(best.checkpoint_dir / f, out / f, "predictor file", PredictorFileError, RECOVER)
            else:
                remove_artifact(out / f)
        summary_json = read_predictor_summary(metrics_file)
        summary_json.update(extra, seconds=round(time.perf_counter() - t0, 1), best_trial=best.trial_config,
                            trials=best.trials)
        write_predictor_summary(metrics_file, summary_json)
    m = read_predictor_summary(metrics_file)["metrics"]
    for kind in ("fp", "quant"):
        if m.get(kind):
            print(f"[predictor] {kind:5s}: held-out rmse {m[kind]['val_rmse']:.4f}, kendall tau "
                  f"{m[kind]['val_kendall_tau']:.3f}, pairwise accuracy {m[kind]['val_pairwise_accuracy']:.3f}")
    print(f"[predictor] wrote {out}")
    return out

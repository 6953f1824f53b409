"""Accuracy predictors (paper section 3.2) and predictor transfer, trained as a Ray Tune trainable.

What the search calls:

    from ems_ray.predictor import load_predictor
    pred = load_predictor(run_dir / "predictor" / "quant.pt", space)   # checks space + encoding
    acc = pred.predict(genes)                                          # (n,) float32, batched

Training without Ray:

    data = load_collected(run_dir / "collect", space)                  # Parquet from `ems-ray collect`
    trained = train_predictors(data, PredictorConfig(), space, seed=0)  # FP, then transfer to quant
    save_predictors(trained, run_dir / "predictor")                    # fp.pt, quant.pt, metrics.json
    spread = metrics_over_seeds(data, PredictorConfig(), space, 0, first=trained.metrics())  # test mean ± sd

With Ray: `run_predictor_stage(run, predictor_config)` (the `ems-ray train-predictor` command; `run`
is the run's `RunContext`, from `RunConfig.context()`), which runs one
training in-process or, with `predictor.mode: tune`, a Ray Tune search (`tune_predictors`).
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "._data": (
        "CollectedData", "CollectedDataError", "SampleSet", "load_collected", "samples_from_table",
        "split_by_architecture", "split_by_group",
    ),
    "._files": (
        "PREDICTOR_FORMAT", "AccuracyPredictor", "PredictorFileError", "load_predictor", "read_predictor_metadata",
        "save_predictors",
    ),
    "._metrics": ("kendall_tau", "pair_counts", "pairwise_accuracy", "ranking_metrics", "rmse"),
    "._model": ("MLPPredictor", "transfer_to_quant"),
    "._synthetic": ("synthetic_accuracy", "synthetic_collection", "write_synthetic_collection"),
    "._training": ("PhaseResult", "TrainedPredictors", "fit_phase", "metrics_over_seeds", "predictor_loss",
                   "report_seeds", "train_predictors"),
    ".config": ("PhaseTrainConfig", "PredictorConfig", "PredictorTuneConfig", "SearchDimension"),
    ".stage": ("load_run_predictors", "run_predictor_stage"),
    ".ray_tune": ("predictor_trainable", "tune_predictors"),
})

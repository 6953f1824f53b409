"""Accuracy predictors (paper section 3.2) and predictor transfer, trained as a Ray Tune trainable.

What the search calls:

    from ems_ray.predictor import load_predictor
    pred = load_predictor(run_dir / "predictor" / "quant.pt", space)   # checks space + encoding
    acc = pred.predict(genes)                                          # (n,) float32, batched

Training without Ray:

    data = load_collected(run_dir / "collect", space)                  # Parquet from `ems-ray collect`
    trained = train_predictors(data, PredictorConfig(), space, seed=0)  # FP, then transfer to quant
    save_predictors(trained, run_dir / "predictor")                    # fp.pt, quant.pt, metrics.json

With Ray: `run_predictor_stage(cfg)` (the `ems-ray train-predictor` command), which runs one
training in-process or, with `predictor.mode: tune`, a Ray Tune search (`tune_predictors`).
"""
from ._data import CollectedData, CollectedDataError, SampleSet, load_collected, samples_from_table, split_by_group
from ._files import PREDICTOR_FORMAT, AccuracyPredictor, PredictorFileError, load_predictor, read_predictor_metadata
from ._metrics import kendall_tau, pair_counts, pairwise_accuracy, ranking_metrics, rmse
from ._model import MLPPredictor, transfer_to_quant
from ._synthetic import synthetic_accuracy, synthetic_collection, write_synthetic_collection
from ._training import PhaseResult, TrainedPredictors, fit_phase, predictor_loss, train_predictors
from .config import PhaseTrainConfig, PredictorConfig, PredictorTuneConfig, SearchDimension
from .stage import load_run_predictors, run_predictor_stage, save_predictors
from .ray_tune import predictor_trainable, tune_predictors

__all__ = [
    "PREDICTOR_FORMAT", "AccuracyPredictor", "CollectedData", "CollectedDataError", "MLPPredictor",
    "PhaseResult", "PhaseTrainConfig", "PredictorConfig", "PredictorFileError", "PredictorTuneConfig",
    "SampleSet", "SearchDimension", "TrainedPredictors", "fit_phase", "kendall_tau", "load_collected",
    "load_predictor", "load_run_predictors", "pair_counts", "pairwise_accuracy", "predictor_loss",
    "predictor_trainable", "ranking_metrics", "read_predictor_metadata", "rmse", "run_predictor_stage",
    "samples_from_table", "save_predictors", "split_by_group", "synthetic_accuracy", "synthetic_collection",
    "train_predictors", "transfer_to_quant", "tune_predictors", "write_synthetic_collection",
]

"""Training: one phase with early stopping (`fit_phase`), and FP pre-training followed by the
quantization-aware phase (`train_predictors`). Pure PyTorch; the Tune adapter only observes.

Three splits by architecture per phase: train (gradient steps), early-stopping (`val_*` metrics,
which pick the best epoch and are optimistic for it) and test (`test_*` metrics, scored once on the
kept weights: the figures to report). `metrics_over_seeds` repeats the training with further
seeds, each with its own split, for the spread of the test metrics.

Resumable: the `on_epoch` callback receives a `snapshot()` function whose result (plain tensors,
numbers and lists, loadable with `weights_only=True`) can be passed back as `resume` to continue
the same run where it stopped.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ems_ray.errors import InputError
from ems_ray.space import Encoding, SearchSpace
from ems_ray.stats import mean_sd

from ._data import CollectedData, SampleSet, split_by_architecture
from ._files import AccuracyPredictor
from ._metrics import ranking_metrics
from ._model import MLPPredictor, transfer_to_quant
from .config import PhaseTrainConfig, PredictorConfig

RANK_TEMPERATURE = 0.1  # in target standard deviations: a 0.1-sigma gap gives logit 1
EpochCallback = Callable[[dict, Callable[[], dict]], None]


def predictor_loss(pred: torch.Tensor, target: torch.Tensor, cfg: PhaseTrainConfig) -> torch.Tensor:
    """Loss on standardised predictions/targets (see `PhaseTrainConfig`)."""
    if cfg.loss == "huber":
        return F.huber_loss(pred, target, delta=cfg.huber_delta)
    loss = F.mse_loss(pred, target)
    if cfg.loss == "rank" and cfg.rank_weight > 0 and len(pred) > 1:
        dt = target[:, None] - target[None, :]
        dp = (pred[:, None] - pred[None, :]) / RANK_TEMPERATURE
        pairs = dt > 0  # each ordered pair once, truly-tied pairs left out
        if pairs.any():
            loss = loss + cfg.rank_weight * F.softplus(-dp[pairs]).mean()
    return loss


@dataclass
class PhaseResult:
    model: MLPPredictor  # the best epoch's weights
    metrics: dict  # early-stopping split's metrics of the best epoch, plus counts
    history: list[dict] = field(default_factory=list)


def _predict(model: MLPPredictor, x: torch.Tensor, batch: int = 8192) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        out = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]) if len(x) else x.new_zeros(0)
    return out.float().cpu().numpy()


def fit_phase(model: MLPPredictor, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
              cfg: PhaseTrainConfig, seed: int, on_epoch: EpochCallback | None = None,
              resume: dict | None = None, phase: str = "fp") -> PhaseResult:
    """Train `model` in place with AdamW and early stopping; returns the best epoch's weights."""
    x_tr, y_tr = train
    x_val, y_val = val
    y_val_np = y_val.cpu().numpy()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    sign = -1.0 if cfg.monitor == "val_rmse" else 1.0  # maximise sign * value
    state = {"epoch": 0, "best_score": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": [],
             "best_model": copy.deepcopy(model.state_dict())}
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        gen.set_state(resume["generator"])
        state.update({k: resume[k] for k in ("epoch", "best_score", "best_epoch", "bad_epochs", "history",
                                             "best_model")})

    def snapshot() -> dict:
        return {"model": copy.deepcopy(model.state_dict()), "optimizer": copy.deepcopy(opt.state_dict()),
                "generator": gen.get_state(), **copy.deepcopy(state)}

    mean, std = model.target_mean, model.target_std
    while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
        model.train()
        order = torch.randperm(len(x_tr), generator=gen).to(x_tr.device)
        total, count = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            pred = model.forward_standardised(x_tr[idx])
            loss = predictor_loss(pred, (y_tr[idx] - mean) / std, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        state["epoch"] += 1
        metrics = {f"val_{k}": v for k, v in ranking_metrics(y_val_np, _predict(model, x_val)).items()}
        score = sign * metrics[cfg.monitor]
        if score > state["best_score"] or state["epoch"] == 1:
            state.update(best_score=score, best_epoch=state["epoch"], bad_epochs=0,
                         best_model=copy.deepcopy(model.state_dict()))
        else:
            state["bad_epochs"] += 1
        record = {"phase": phase, "epoch": state["epoch"], "train_loss": total / max(count, 1), **metrics,
                  "best_epoch": state["best_epoch"]}
        state["history"].append(record)
        if on_epoch is not None:
            on_epoch(record, snapshot)
    model.load_state_dict(state["best_model"])
    best = state["history"][state["best_epoch"] - 1]
    metrics = {k: best[k] for k in ("val_rmse", "val_kendall_tau", "val_pairwise_accuracy")}
    metrics.update(best_epoch=state["best_epoch"], epochs=state["epoch"], train_rows=len(x_tr), val_rows=len(x_val))
    return PhaseResult(model, metrics, state["history"])


@dataclass
class TrainedPredictors:
    fp: AccuracyPredictor
    quant: AccuracyPredictor | None
    history: list[dict]

    def metrics(self) -> dict:
        return {"fp": self.fp.metadata["metrics"], "quant": self.quant.metadata["metrics"] if self.quant else None}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("predictor.device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    return torch.device(name)


class PhaseData:
    """A sample set encoded once and split by architecture into train, early-stopping and test rows."""

    def __init__(self, samples: SampleSet, encoding: Encoding, fp_only: bool, val_fraction: float,
                 test_fraction: float, seed: int, device: torch.device):
        tr, va, te = split_by_architecture(samples.arch_id, val_fraction, test_fraction, seed)
        x = torch.from_numpy(encoding.encode(samples.genes, fp_only=fp_only)).to(device)
        y = torch.from_numpy(samples.accuracy.astype(np.float32)).to(device)
        self.train, self.val, self.test = (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te])
        self.test_architectures = int(len(np.unique(samples.arch_id[te])))

    def test_metrics(self, model: MLPPredictor) -> dict:
        """`test_*` metrics of `model` (scored once, after training) and the test split's size."""
        x, y = self.test
        scores = ranking_metrics(y.cpu().numpy(), _predict(model, x))
        return {**{f"test_{k}": v for k, v in scores.items()}, "test_rows": len(x),
                "test_architectures": self.test_architectures}


def build_fp_model(config: PredictorConfig, encoding: Encoding) -> MLPPredictor:
    return MLPPredictor(encoding.fp_dim, 0, config.hidden, config.layers, config.activation)


def build_quant_model(config: PredictorConfig, encoding: Encoding, fp_model: MLPPredictor | None,
                      seed: int) -> MLPPredictor:
    """Transferred from `fp_model`, or fresh (scratch) when `fp_model` is None."""
    if fp_model is None:
        return MLPPredictor(encoding.fp_dim, encoding.quant_dim, config.hidden, config.layers, config.activation)
    return transfer_to_quant(fp_model, encoding.quant_dim, config.quant_head_init,
                             torch.Generator().manual_seed(seed + 2))


def train_predictors(data: CollectedData, config: PredictorConfig, space: SearchSpace, seed: int = 0,
                     on_epoch: EpochCallback | None = None, resume: dict | None = None,
                     fp_model: MLPPredictor | None = None) -> TrainedPredictors:
    """FP predictor on `data.fp`, then the quantization-aware one on `data.quant` (if any rows).

    `fp_model` skips FP training and uses that (trained) predictor; `resume` is a snapshot from
    `on_epoch`. Deterministic in `seed` on the CPU; leaves the global torch RNG as it found it.
    """
    device = resolve_device(config.device)
    encoding = Encoding(space)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        history: list[dict] = []
        fp_phase_resume = resume["fit"] if resume and resume["phase"] == "fp" else None
        if resume and resume["phase"] == "quant":
            fp_model = build_fp_model(config, encoding).to(device)
            fp_model.load_state_dict(resume["fp_model"])
            fp_metrics, history = resume["fp_metrics"], list(resume["fp_history"])
        elif fp_model is not None:
            fp_metrics = {}
        else:
            fp_data = PhaseData(data.fp, encoding, True, config.fp.val_fraction, config.test_fraction, seed, device)
            fp_model = build_fp_model(config, encoding).to(device)
            fp_model.set_target_scale(fp_data.train[1].mean(), fp_data.train[1].std())

            def fp_cb(record: dict, snapshot: Callable[[], dict]) -> None:
                if on_epoch is not None:
                    on_epoch(record, lambda: {"phase": "fp", "fit": snapshot()})

            result = fit_phase(fp_model, fp_data.train, fp_data.val, config.fp, seed, fp_cb, fp_phase_resume, "fp")
            fp_metrics, history = {**result.metrics, **fp_data.test_metrics(fp_model)}, list(result.history)
        fp = AccuracyPredictor(fp_model.cpu().eval(), space, "fp", {
            "metrics": fp_metrics, "training": config.fp.model_dump(mode="json"), "seed": seed})
        if len(data.quant) < 4:
            return TrainedPredictors(fp, None, history)

        # the same split seed as the FP phase: an architecture is in the same split in both sets
        q_data = PhaseData(data.quant, encoding, False, config.quant.val_fraction, config.test_fraction, seed, device)
        if resume and resume["phase"] == "quant":
            q_model = build_quant_model(config, encoding, None, seed).to(device)
        else:
            q_model = build_quant_model(config, encoding, copy.deepcopy(fp_model) if config.transfer else None,
                                        seed).to(device)
            if not config.transfer:
                q_model.set_target_scale(q_data.train[1].mean(), q_data.train[1].std())
        fp_snapshot = {"fp_model": copy.deepcopy(fp_model.state_dict()), "fp_metrics": fp_metrics,
                       "fp_history": history}

        def q_cb(record: dict, snapshot: Callable[[], dict]) -> None:
            if on_epoch is not None:
                on_epoch(record, lambda: {"phase": "quant", "fit": snapshot(), **copy.deepcopy(fp_snapshot)})

        q_resume = resume["fit"] if resume and resume["phase"] == "quant" else None
        result = fit_phase(q_model, q_data.train, q_data.val, config.quant, seed + 1, q_cb, q_resume, "quant")
        q_metrics = {**result.metrics, **q_data.test_metrics(q_model)}
        quant = AccuracyPredictor(q_model.cpu().eval(), space, "quant", {
            "metrics": q_metrics, "training": config.quant.model_dump(mode="json"), "seed": seed,
            "transfer": config.transfer, "quant_head_init": config.quant_head_init if config.transfer else None})
        return TrainedPredictors(fp, quant, history + result.history)


REPORTED_METRICS = ("test_rmse", "test_kendall_tau", "test_pairwise_accuracy")
REPORT_SEED_STRIDE = 1000  # report seed k is seed + k * stride, clear of the seed + 1, + 2 streams of a training


def report_seeds(seed: int, count: int) -> list[int]:
    """The seeds of a report: the run's seed first (its predictors are the saved ones), then further ones."""
    return [seed + k * REPORT_SEED_STRIDE for k in range(count)]


def metrics_over_seeds(data: CollectedData, config: PredictorConfig, space: SearchSpace, seed: int,
                       first: dict | None = None) -> dict:
    """Mean and sd of the test metrics over `config.report_seeds` trainings (each seed its own split).

    `first`: the run seed's `TrainedPredictors.metrics()` when already trained (not retrained).
    Returns `{"seeds": [...], "fp": {metric: mean_sd}, "quant": {...} or None}`.
    """
    seeds = report_seeds(seed, config.report_seeds)
    runs = [first] if first is not None else []
    runs += [train_predictors(data, config, space, s).metrics() for s in seeds[len(runs):]]
    out: dict = {"seeds": seeds}
    for kind in ("fp", "quant"):
        per_seed = [r[kind] for r in runs if r.get(kind)]
        out[kind] = ({m: mean_sd([r[m] for r in per_seed]) for m in REPORTED_METRICS}
                     if len(per_seed) == len(runs) and all(m in per_seed[0] for m in REPORTED_METRICS) else None)
    return out

"""Configuration of the accuracy predictors: network shape, the two training phases, and the
Ray Tune search over their hyper-parameters (the `predictor:` section of a run config)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from ems_ray.dotted import set_dotted
from ems_ray.errors import InputError

class PhaseTrainConfig(BaseModel):
    """One training phase (FP pre-training or quantization-aware fine-tuning).

    AdamW at a constant learning rate; after every epoch the early-stopping split is scored and
    training stops when `monitor` has not improved for `patience` epochs; the best epoch's weights
    are kept. The reported metrics come from a third split, the test split (`test_fraction`).
    Losses are computed on targets standardised by the training set (for a transferred predictor:
    by the FP training set it inherits), so `huber_delta` is in target standard deviations.
    `rank` is MSE plus `rank_weight` times a pairwise logistic (RankNet) term over the batch's
    pairs, which rewards the ordering the search depends on while MSE keeps values calibrated.
    """

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    epochs: PositiveInt = Field(300, description="upper bound; early stopping usually ends sooner")
    patience: PositiveInt = 30
    batch_size: PositiveInt = 256
    loss: Literal["mse", "huber", "rank"] = "mse"
    huber_delta: float = Field(1.0, gt=0)
    rank_weight: float = Field(1.0, ge=0)
    monitor: Literal["val_rmse", "val_pairwise_accuracy"] = "val_rmse"
    val_fraction: float = Field(0.2, gt=0, lt=1, description="early-stopping share (split by architecture)")


class SearchDimension(BaseModel):
    """One searched hyper-parameter: exactly one of the distributions below."""

    model_config = ConfigDict(extra="forbid")

    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = Field(None, description="[low, high), as tune.randint")
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchDimension:
        given = [k for k in ("loguniform", "uniform", "randint", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise InputError(f"give exactly one of loguniform, uniform, randint, choice (got {given or 'none'})")
        if self.choice is not None and not self.choice:
            raise InputError("choice must not be empty")
        for k in ("loguniform", "uniform", "randint"):
            lo_hi = getattr(self, k)
            if lo_hi is not None and not lo_hi[0] < lo_hi[1]:
                raise InputError(f"{k}: low must be below high, got {list(lo_hi)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise InputError("loguniform bounds must be positive")
        return self

    def extremes(self) -> list[Any]:
        """Values that must all be valid settings (the ends of a range, or every choice)."""
        if self.choice is not None:
            return list(self.choice)
        lo, hi = self.loguniform or self.uniform or (self.randint[0], self.randint[1] - 1)
        return [lo, hi]


class PredictorTuneConfig(BaseModel):
    """A Ray Tune search over predictor hyper-parameters (used when `mode: tune`).

    `space` maps dotted keys of the `predictor` section (`hidden`, `fp.lr`, `quant.loss`, ...) to
    distributions. Each trial trains FP then quantization-aware predictors; the trial with the
    best held-out pairwise accuracy of its final (quantization-aware) predictor is exported.
    """

    model_config = ConfigDict(extra="forbid")

    num_samples: PositiveInt = 8
    algorithm: Literal["random", "optuna"] = "random"
    max_concurrent: PositiveInt | None = None
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0, description="with `device: auto`/`cuda`, a GPU share per trial")
    checkpoint_every: PositiveInt = Field(10, description="epochs between trial checkpoints")
    max_failures: int = Field(1, ge=0)
    space: dict[str, SearchDimension] = Field(default_factory=lambda: {
        "fp.lr": SearchDimension(loguniform=(3e-4, 3e-3)),
        "fp.weight_decay": SearchDimension(loguniform=(1e-6, 1e-3)),
        "quant.lr": SearchDimension(loguniform=(1e-4, 2e-3)),
        "hidden": SearchDimension(choice=[200, 400]),
        "fp.loss": SearchDimension(choice=["mse", "rank"]),
    })


# run settings, and what defines the test split and its report (a search must not move the test set)
_NOT_SEARCHABLE = ("tune", "mode", "data_dir", "quant_scheme", "device", "threads", "test_fraction", "report_seeds")


class PredictorConfig(BaseModel):
    """FP predictor, quantization-aware predictor and how the second is initialised.

    The quantization-aware predictor is the FP network plus an input head for the quant part of
    the encoding, summed into the first hidden layer. With `transfer` it starts as an exact copy of
    the trained FP predictor; `quant_head_init: zero` (default) makes it start as exactly the FP
    function, `small` adds N(0, 0.01) noise to the head instead.

    Evaluation: the architectures are split three ways (train / early-stopping / test, see
    `split_by_architecture`); the reported metrics are the test split's, and their spread over
    `report_seeds` trainings (the run's seed and further ones, each with its own split) is reported
    beside them. The saved predictors are the run seed's.
    """

    model_config = ConfigDict(extra="forbid")

    hidden: PositiveInt = 400
    layers: PositiveInt = Field(3, description="hidden layers (the paper's 3-layer MLP)")
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    fp: PhaseTrainConfig = Field(default_factory=PhaseTrainConfig)
    quant: PhaseTrainConfig = Field(default_factory=lambda: PhaseTrainConfig(
        lr=5e-4, epochs=500, patience=50, batch_size=128))
    transfer: bool = Field(True, description="initialise the quantization-aware predictor from the FP one")
    quant_head_init: Literal["zero", "small"] = "zero"
    data_dir: Path | None = Field(None, description="collected Parquet (fp/, quant/); default <run_dir>/collect")
    quant_scheme: int | None = Field(None, description="use only quantized rows of this sampling scheme "
                                     "(1: random arch and policy, 2: arch x N policies; None: all)")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    threads: PositiveInt | None = Field(None, description="torch threads (None: leave torch's default)")
    mode: Literal["single", "tune"] = Field("single", description="one run with these settings, or a Tune search")
    tune: PredictorTuneConfig = Field(default_factory=PredictorTuneConfig)
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of architectures held out for the "
                                 "reported test metrics (never used for training or early stopping)")
    report_seeds: PositiveInt = Field(3, description="trainings (seeds) the test metrics' mean and sd are over; "
                                      "the first is the run's seed and gives the saved predictors")

    @model_validator(mode="after")
    def _splits_fit(self) -> PredictorConfig:
        for phase in ("fp", "quant"):
            val = getattr(self, phase).val_fraction
            if val + self.test_fraction >= 1:
                raise InputError(f"{phase}.val_fraction {val} + test_fraction {self.test_fraction} must be below 1 "
                                 "(some architectures must be left to train on)")
        return self

    @model_validator(mode="after")
    def _search_keys_valid(self) -> PredictorConfig:
        base = self.model_dump(mode="json", exclude={"tune"}) | {"tune": {"space": {}}}
        for key, dim in self.tune.space.items():
            if key.split(".")[0] in _NOT_SEARCHABLE:
                raise InputError(f"tune.space.{key}: not a searchable setting (run settings cannot be searched)")
            for value in dim.extremes():
                try:
                    PredictorConfig.model_validate(apply_overrides(base, {key: value}))
                except KeyError as exc:
                    raise InputError(f"tune.space.{key}: {exc.args[0]}") from None
                except ValidationError as exc:
                    detail = exc.errors()[0]["msg"]
                    raise InputError(f"tune.space.{key}: value {value!r} is not a valid setting ({detail})") from None
        return self


def apply_overrides(base: dict, overrides: dict) -> dict:
    """Copy of `base` with dotted-key (or nested-dict) overrides; unknown keys raise KeyError."""
    out = copy.deepcopy(base)
    flat: dict[str, Any] = {}

    def _flatten(prefix: str, d: dict) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and key.split(".")[0] in ("fp", "quant"):
                _flatten(key + ".", v)
            else:
                flat[key] = v

    _flatten("", overrides)
    for key, value in flat.items():
        try:
            set_dotted(out, key, value, create=False)
        except InputError:
            raise KeyError(f"unknown predictor setting '{key}'") from None
    return out

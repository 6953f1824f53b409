"""Ray Tune adapter: the predictor trainable and a hyper-parameter search around it.

One trial = FP pre-training then the quantization-aware phase, with one `tune.report` per epoch
(`phase`, `epoch`, `train_loss`, `val_rmse`, `val_kendall_tau`, `val_pairwise_accuracy`,
`score`), a resumable checkpoint every `checkpoint_every` epochs, and a last report (`phase:
final`) whose checkpoint holds the finished predictor files (fp.pt, quant.pt, metrics.json).
`score` is the early-stopping split's pairwise accuracy of the phase's model; in the last report,
that of the final predictor (the quantization-aware one when there is quantized data). The search
ranks trials by the last report's `score`, never by the test split, so the chosen trial's `fp_test_*`
and `quant_test_*` metrics (in the last report and its metrics.json) stay an unbiased estimate.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ems_ray.artifacts import load_torch_bytes, read_verified, save_artifact
from ems_ray.dotted import set_dotted
from ems_ray.space import SearchSpace

from ._training import train_predictors
from .config import PredictorConfig, SearchDimension, apply_overrides

if TYPE_CHECKING:
    from ._data import CollectedData

STATE_FILE = "state.pt"
METRIC, MODE = "score", "max"


def _load_trial_state(path: Path) -> dict:
    """A trial checkpoint, verified against its digest (PredictorFileError naming it otherwise)."""
    from ._files import PredictorFileError

    recover = "delete the predictor's tune folder (<run_dir>/predictor/tune) to start the search over"
    return load_torch_bytes(read_verified(path, "predictor trial checkpoint", PredictorFileError, recover),
                            path, "predictor trial checkpoint", PredictorFileError)


def predictor_trainable(config: dict, *, data: CollectedData, base: dict, space_yaml: str, seed: int,
                        checkpoint_every: int) -> None:
    """Function trainable; `config` holds the searched settings (nested `predictor` keys)."""
    from ray import tune

    from ._files import save_predictors

    pc = PredictorConfig.model_validate(apply_overrides(base, config))
    space = SearchSpace.from_yaml(space_yaml)
    if pc.threads:
        torch.set_num_threads(pc.threads)
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            if (Path(d) / STATE_FILE).is_file():
                resume = _load_trial_state(Path(d) / STATE_FILE)

    def on_epoch(record: dict, snapshot) -> None:
        metrics = {**record, METRIC: record["val_pairwise_accuracy"]}
        if record["epoch"] % checkpoint_every:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            save_artifact(Path(d) / STATE_FILE, snapshot())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    trained = train_predictors(data, pc, space, seed, on_epoch=on_epoch, resume=resume)
    final = trained.metrics()
    last = final["quant"] or final["fp"]
    metrics = {"phase": "final", METRIC: last["val_pairwise_accuracy"]}
    for kind in ("fp", "quant"):
        for k, v in (final[kind] or {}).items():
            metrics[f"{kind}_{k}"] = v
    with tempfile.TemporaryDirectory() as d:
        save_predictors(trained, d, {"trial_config": config})
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _distribution(dim: SearchDimension):
    from ray import tune

    if dim.loguniform is not None:
        return tune.loguniform(*dim.loguniform)
    if dim.uniform is not None:
        return tune.uniform(*dim.uniform)
    if dim.randint is not None:
        return tune.randint(*dim.randint)
    return tune.choice(dim.choice)


def param_space(config: PredictorConfig) -> dict:
    """Tune's nested parameter space from the dotted keys of `config.tune.space`."""
    out: dict[str, Any] = {}
    for key, dim in config.tune.space.items():
        set_dotted(out, key, _distribution(dim))
    return out


@dataclass
class BestTrial:
    checkpoint_dir: Path  # the best trial's last checkpoint: fp.pt, quant.pt, metrics.json
    trial_config: dict
    metrics: dict
    trials: list[dict]  # every trial's searched settings and final score


def tune_predictors(data: CollectedData, config: PredictorConfig, space: SearchSpace, seed: int, storage: Path,
                    name: str = "predictor") -> BestTrial:
    """Run (or resume, when `storage/name` holds an unfinished run) the Tune search; needs Ray."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # trials checkpoint every few (fast) epochs; Tune then snapshots the experiment state often,
    # which costs milliseconds here, so its "excessive snapshotting" warning is only noise
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    tc = config.tune
    trainable = tune.with_resources(
        tune.with_parameters(predictor_trainable, data=data, base=config.model_dump(mode="json"),
                             space_yaml=space.to_yaml(), seed=seed, checkpoint_every=tc.checkpoint_every),
        {"cpu": tc.cpus_per_trial, "gpu": tc.gpus_per_trial})
    storage = Path(storage).resolve()
    space_dict = param_space(config)
    if tune.Tuner.can_restore(str(storage / name)):
        tuner = tune.Tuner.restore(str(storage / name), trainable, resume_errored=True, param_space=space_dict)
    else:
        if tc.algorithm == "optuna":
            from ray.tune.search.optuna import OptunaSearch

            search_alg = OptunaSearch(seed=seed)
        else:
            search_alg = BasicVariantGenerator(random_state=seed)
        tuner = tune.Tuner(
            trainable, param_space=space_dict,
            tune_config=tune.TuneConfig(metric=METRIC, mode=MODE, num_samples=tc.num_samples, search_alg=search_alg,
                                        max_concurrent_trials=tc.max_concurrent),
            run_config=tune.RunConfig(
                name=name, storage_path=str(storage), verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=tc.max_failures)),
        )
    results = tuner.fit()
    finished = [r for r in results if r.error is None and r.metrics.get("phase") == "final"
                and r.metrics.get(METRIC) == r.metrics.get(METRIC)]  # NaN score: nothing to rank
    if not finished:
        errors = [f"{type(r.error).__name__}: {r.error}" for r in results if r.error is not None]
        raise RuntimeError(f"no predictor trial finished ({len(results)} trials); first errors: {errors[:2]}")
    best = max(finished, key=lambda r: r.metrics[METRIC])
    done = {id(r) for r in finished}
    trials = [{"config": r.config, METRIC: r.metrics.get(METRIC), "finished": id(r) in done} for r in results]
    return BestTrial(Path(best.checkpoint.path), best.config, dict(best.metrics), trials)

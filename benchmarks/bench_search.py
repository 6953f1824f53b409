"""Speed of the search: the local driver on the paper's full budget, and Tune trials per second.

    python benchmarks/bench_search.py [--preset apq-imagenet] [--budget latency=8.5ms] [--predictor quant.pt]
                                      [--tune-trials 40] [--no-tune]

Local driver: 500 generations x 100 candidates (50,000 scored) on `--preset`, scored by the given
predictor or, without one, an untrained predictor of the preset's real input dims (hidden 400,
3 layers: the same cost per row). Tune: `--tune-trials` candidates of `fmnist-small` scored by the
search trainable, side by side in one Ray session: default-configured Tune (random search over the
same space, one CPU and a fresh actor per trial, Tune's default loggers and console output) against
`RandomSearcher` as `fit_tune` configures it (actors reused, 0.01 CPU per trial, 2 in flight, short
trial names, CSV + TensorBoard loggers only) and variants of that; wall time, time to the first
completed trial (start-up) and the steady rate after it, and a Markdown table.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

import numpy as np
import torch

from ems_ray.hardware import build_lut
from ems_ray.predictor import AccuracyPredictor, MLPPredictor, load_predictor
from ems_ray.search import Budget, CandidateScorer, EvolutionConfig, SyntheticPredictor, cheapest_costs, \
    run_local_evolution
from ems_ray.ray_session import local_ray
from ems_ray.space import Encoding, Genome, resolve_space


def local_driver(preset: str, budget: str, predictor_path: str | None, generations: int, threads: int) -> None:
    torch.set_num_threads(threads)
    space = resolve_space(preset)
    t0 = time.perf_counter()
    table = build_lut(space)
    print(f"LUT {space.name}: built in {time.perf_counter() - t0:.1f} s")
    if predictor_path:
        predictor = load_predictor(predictor_path, space)
        label = predictor_path
    else:
        enc = Encoding(space)
        torch.manual_seed(0)
        predictor = AccuracyPredictor(MLPPredictor(enc.fp_dim, enc.quant_dim, 400, 3), space, "quant")
        label = f"untrained quant MLP {enc.fp_dim}+{enc.quant_dim} -> 400 x 3"
    scorer = CandidateScorer(predictor, table)
    t0 = time.perf_counter()
    cheapest = cheapest_costs(table)
    print(f"cheapest possible: {cheapest['latency_ms']:.3f} ms, {cheapest['energy_mj']:.3f} mJ, "
          f"{cheapest['bitops'] / 1e9:.2f} GBitOps ({time.perf_counter() - t0:.2f} s)")
    b = Budget.parse(budget)
    cfg = EvolutionConfig(generations=generations)
    times = []
    for seed in range(2):
        result = run_local_evolution(scorer, b, cfg, seed=seed)
        times.append(result.seconds)
    t0 = time.perf_counter()
    for _ in range(generations):
        predictor.predict(table.genome.sample(np.random.default_rng(0), cfg.population))
    predict_s = time.perf_counter() - t0
    print(f"local driver, {label}, {threads} thread(s), budget {b.describe()}: {result.scored} candidates in "
          f"{min(times):.2f} s (best of {len(times)}; predictor alone {predict_s:.2f} s); "
          f"best {result.scores['accuracy']:.4f} at {result.scores['latency_ms']:.3f} ms")


def _timed_fit(make_tuner, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, s to the first completed trial, steady trials/s after it) of one Tune run, with
    `env` set for the run only (Tune reads its TUNE_* settings when a run starts)."""
    from ray.tune import Callback

    class Clock(Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.times.append(time.perf_counter())

    clock = Clock()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        t0 = time.perf_counter()
        make_tuner([clock]).fit()
        wall = time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    t = clock.times
    steady = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else float("nan")
    return wall, (t[0] - t0) if t else float("nan"), steady


def tune_rates(n_trials: int) -> None:
    """Default-configured Tune against the configuration the search uses, and variants of it, in
    one Ray session on the same trainable and space; each row `n_trials` candidates."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from ems_ray.search.compare import tune_loggers
    from ems_ray.search.tune import RandomSearcher, param_space, score_trainable
    from ems_ray.search.tune.experiments import _trial_name

    os.environ.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)  # the default run gets Tune's default loggers
    session = contextlib.ExitStack()
    session.enter_context(local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False))
    space = resolve_space("fmnist-small")
    scorer = CandidateScorer(SyntheticPredictor(space), build_lut(space))
    lat = scorer.costs(Genome(space).sample(np.random.default_rng(0), 400))["latency_ms"]
    budget = Budget(latency_ms=float(np.quantile(lat, 0.5)))
    trainable = tune.with_parameters(score_trainable, scorer=scorer, budget=budget)
    quiet = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}

    def default(d: str):
        return lambda cbs: tune.Tuner(
            trainable, param_space=param_space(Genome(space)),
            tune_config=tune.TuneConfig(num_samples=n_trials, search_alg=BasicVariantGenerator(random_state=0)),
            run_config=tune.RunConfig(storage_path=d, name="default", callbacks=cbs))

    def ours(d: str, name: str, loggers, concurrent: int, cpu: float = 0.01, reuse: bool = True):
        return lambda cbs: tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpu}), param_space=param_space(Genome(space)),
            tune_config=tune.TuneConfig(search_alg=RandomSearcher(scorer.table, budget, n_trials, seed=0),
                                        num_samples=n_trials, reuse_actors=reuse, max_concurrent_trials=concurrent,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(storage_path=d, name=name, verbose=0, callbacks=[*loggers(), *cbs]))

    rows = []
    with tempfile.TemporaryDirectory() as d:
        variants = [
            ("default Tuner (BasicVariantGenerator, 1 CPU/trial, no actor reuse, default loggers, verbose)",
             default(d), {}),
            ("as fit_tune runs it (reuse, 0.01 CPU, 2 in flight, CSV + TensorBoard loggers, verbose 0)",
             ours(d, "ours", tune_loggers, concurrent=2), quiet),
            ("  same, 1 in flight", ours(d, "c1", tune_loggers, concurrent=1), quiet),
            ("  same, 8 in flight (the earlier setting)", ours(d, "c8", tune_loggers, concurrent=8), quiet),
            ("  same, no result loggers at all", ours(d, "nolog", list, concurrent=2), quiet),
            ("  same, experiment checkpoint at most every 60 s",
             ours(d, "ckpt", tune_loggers, concurrent=2), {**quiet, "TUNE_GLOBAL_CHECKPOINT_S": "60"}),
        ]
        for label, make, env in variants:
            wall, first, steady = _timed_fit(make, env)
            rows.append((label, wall, first, steady))
            print(f"{label}: {n_trials} trials in {wall:.1f} s = {n_trials / wall:.2f} trials/s "
                  f"(first trial after {first:.1f} s, then {steady:.2f} trials/s)", flush=True)
    base = rows[0][1]
    print("\n| configuration | trials/s | first trial (s) | steady trials/s | speed-up vs default |\n"
          "| --- | --- | --- | --- | --- |")
    for label, wall, first, steady in rows:
        print(f"| {label.strip()} | {n_trials / wall:.2f} | {first:.1f} | {steady:.2f} | {base / wall:.2f}x |")
    session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="apq-imagenet")
    parser.add_argument("--budget", default="latency=8.5ms")
    parser.add_argument("--predictor", help="a predictor file (default: untrained, same dims)")
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tune-trials", type=int, default=40)
    parser.add_argument("--no-tune", action="store_true")
    args = parser.parse_args()
    local_driver(args.preset, args.budget, args.predictor, args.generations, args.threads)
    if not args.no_tune:
        tune_rates(args.tune_trials)


if __name__ == "__main__":
    main()

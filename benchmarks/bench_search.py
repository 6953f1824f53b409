"""Speed of the search: the local driver on the paper's full budget, and Tune trials per second.

    python benchmarks/bench_search.py [--preset apq-imagenet] [--budget latency=8.5ms] [--predictor quant.pt]
                                      [--tune-trials 40] [--no-tune]

Local driver: 500 generations x 100 candidates (50,000 scored) on `--preset`, scored by the given
predictor or, without one, an untrained predictor of the preset's real input dims (hidden 400,
3 layers: the same cost per row). Tune: `--tune-trials` candidates of `fmnist-small` scored by the
search trainable, (a) default-configured Tune (random search over the same space, one CPU and a
fresh actor per trial), (b) the evolution searcher as `run_tune_search` configures it (actors
reused, 0.01 CPU per trial, 8 in flight, short trial names).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from ems_ray.hardware import build_lut
from ems_ray.predictor import AccuracyPredictor, MLPPredictor, load_predictor
from ems_ray.search import Budget, CandidateScorer, EvolutionConfig, SyntheticPredictor, cheapest_costs, \
    run_local_evolution
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


def tune_rates(n_trials: int) -> None:
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from ems_ray.search.ray_tune import param_space, run_tune_search, score_trainable

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    space = resolve_space("fmnist-small")
    scorer = CandidateScorer(SyntheticPredictor(space), build_lut(space))
    lat = scorer.costs(Genome(space).sample(np.random.default_rng(0), 400))["latency_ms"]
    budget = Budget(latency_ms=float(np.quantile(lat, 0.5)))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        tune.Tuner(tune.with_parameters(score_trainable, scorer=scorer, budget=budget),
                   param_space=param_space(Genome(space)),
                   tune_config=tune.TuneConfig(num_samples=n_trials, search_alg=BasicVariantGenerator(random_state=0)),
                   run_config=tune.RunConfig(storage_path=d, name="default", verbose=0)).fit()
        default_s = time.perf_counter() - t0
        print(f"Tune, default configuration: {n_trials} trials in {default_s:.1f} s "
              f"= {n_trials / default_s:.2f} trials/s")
        pop = max(n_trials // 4, 2)
        cfg = EvolutionConfig(population=pop, parents=max(pop // 4, 1), mutations=pop // 2,
                              crossovers=pop - pop // 2, generations=4)
        result = run_tune_search(scorer, budget, "evolution", cfg, seed=0, storage=d, name="evolution")
        print(f"Tune, EvolutionSearcher as run_tune_search runs it: {result.scored} trials in {result.seconds:.1f} s "
              f"= {result.scored / result.seconds:.2f} trials/s")
    ray.shutdown()


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

"""Speed of the search: the local driver on the paper's full budget, and candidates per second through Tune.

    python benchmarks/bench_search.py [--preset apq-imagenet] [--budget latency=8.5ms] [--predictor quant.pt]
        [--tune-candidates 50000] [--optuna-candidates 1000] [--batches 100,default] [--no-local] [--no-tune]

Local driver: 500 generations x 100 candidates (50,000 scored) on `--preset`, scored by the given
predictor or, without one, an untrained predictor of the preset's real input dims (hidden 400,
3 layers: the same cost per row); the dense scoring path it replaced (`DenseScorer`) beside the
gathered one, with and without the distinct population, and the predictor and LUT alone.
Tune: each algorithm as `compare-searchers` runs it (one trial per batch), at each of `--batches`
(candidates per trial; the evolution's in whole generations), `--tune-candidates` for the evolution
and random search, `--optuna-candidates` for TPE and NSGA-II, in one Ray session; wall time (Tune's
start-up included), candidates and trials per second, and a Markdown table.
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
from ems_ray.search import Budget, CandidateScorer, EvolutionConfig, SyntheticPredictor, \
    run_local_evolution
from ems_ray.ray_session import local_ray
from ems_ray.space import Encoding, Genome, resolve_space
from ems_ray.space.genome import DW_A, DW_W, KERNEL, MID, PW_A, PW_W


class DenseScorer(CandidateScorer):
    """The scoring path before the gathered one, for the side-by-side: the predictor on the dense
    one-hot encoding (`AccuracyPredictor.predict`) and the LUT gathered per gene column with
    `np.where` over skipped slots (the former `CostTable.score`)."""

    def accuracy(self, genes: np.ndarray) -> np.ndarray:
        return np.asarray(self.predictor.predict(np.atleast_2d(genes)), dtype=np.float64)

    def costs(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        t, g = self.table, self.table.genome
        genes = np.atleast_2d(genes)
        active = g.active(genes)[..., None]
        col = {gene: genes[:, g.slot_columns(gene)].astype(np.intp) for gene in (KERNEL, MID, PW_W, PW_A, DW_W, DW_A)}
        slot = np.arange(g.n_slots)[None, :]
        pw = (slot, col[MID], col[PW_W], col[PW_A])
        dw = (slot, col[MID], col[KERNEL], col[DW_W], col[DW_A])
        f = np.where(active, t._pw_f[pw] + t._dw_f[dw], 0.0).sum(axis=1) + t._fixed_f
        n = np.where(active, t._pw_i[pw] + t._dw_i[dw], 0).sum(axis=1) + t._fixed_i
        return {"latency_ms": f[:, 0], "energy_mj": f[:, 1], "macs": n[:, 0], "bitops": n[:, 1]}


def local_driver(preset: str, budget: str, predictor_path: str | None, generations: int, threads: int,
                 repeats: int = 2) -> None:
    """The local driver at the paper's budget, today's scoring against the dense one it replaced,
    in one process (each row best of `repeats` seeds' runs), then the predictor and the LUT alone."""
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
    b = Budget.parse(budget)
    dense, gathered = DenseScorer(predictor, table), CandidateScorer(predictor, table)
    rows = []
    for name, scorer, distinct in (("dense scoring, duplicates allowed (before)", dense, False),
                                   ("gathered scoring, duplicates allowed", gathered, False),
                                   ("gathered scoring, distinct population (default)", gathered, True)):
        cfg = EvolutionConfig(generations=generations, distinct=distinct)
        results = [run_local_evolution(scorer, b, cfg, seed=seed) for seed in range(repeats)]
        rows.append((name, min(r.seconds for r in results), results[0]))
        print(f"{name}: {results[0].scored} candidates in {rows[-1][1]:.2f} s", flush=True)
    genes = [table.genome.sample_spread(np.random.default_rng(i), 100) for i in range(generations)]
    parts = []
    for what, fn in (("predictor", lambda s, x: s.accuracy(x)), ("LUT", lambda s, x: s.costs(x))):
        times = []
        for scorer in (dense, gathered):
            t0 = time.perf_counter()
            for x in genes:
                fn(scorer, x)
            times.append(time.perf_counter() - t0)
        parts.append((what, *times))
    base = rows[0][1]
    print(f"\nlocal driver, {preset}, {label}, {threads} thread(s), budget {b.describe()}, "
          f"{generations} generations x 100:\n"
          "| configuration | seconds | vs before | best predicted |\n| --- | --- | --- | --- |")
    for name, seconds, result in rows:
        print(f"| {name} | {seconds:.2f} | {base / seconds:.2f}x | {result.scores['accuracy']:.4f} |")
    print(f"\n{generations} batches of 100 rows scored alone:\n| part | dense (s) | gathered (s) | speed-up |\n"
          "| --- | --- | --- | --- |")
    for what, before, after in parts:
        print(f"| {what} | {before:.3f} | {after:.3f} | {before / after:.1f}x |")


def tune_rates(candidates: int, optuna_candidates: int, batches: list[int | None], algorithms: list[str]) -> None:
    """Candidates per second through Tune, one trial per batch, as `compare-searchers` runs each
    algorithm (`fit_tune`: actors reused, 1 trial in flight, CSV + TensorBoard loggers, every
    candidate a Parquet row), on `fmnist-small` with the synthetic predictor and the real LUT;
    each (algorithm, batch) in its own fresh experiment of one Ray session, so the rows sit side
    by side (batch None: `DEFAULT_BATCH`, the evolution's generations per trial from it)."""

    from ems_ray.search.compare import tune_loggers
    from ems_ray.search.tune import fit_tune, scored_trials
    from ems_ray.search.tune.experiments import DEFAULT_BATCH

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    session = contextlib.ExitStack()
    session.enter_context(local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False))
    space = resolve_space("fmnist-small")
    scorer = CandidateScorer(SyntheticPredictor(space), build_lut(space))
    lat = scorer.costs(Genome(space).sample(np.random.default_rng(0), 400))["latency_ms"]
    budget = Budget(latency_ms=float(np.quantile(lat, 0.3)))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for algorithm in algorithms:
            for batch in batches:
                n = optuna_candidates if algorithm in ("tpe", "nsga2") else candidates
                evolution = EvolutionConfig(generations=n // 100)  # population 100: 100 per generation
                size = 100 if algorithm == "nsga2" else batch or DEFAULT_BATCH[algorithm]
                t0 = time.perf_counter()
                results, _ = fit_tune(scorer, budget, algorithm, evolution, n, seed=0, storage=d,
                                      name=f"{algorithm}-{size}", callbacks=tune_loggers(), batch=batch)
                wall = time.perf_counter() - t0
                columns, _ = scored_trials(results, Genome(space))
                scored = len(columns["accuracy"])
                rows.append((algorithm, size, scored, len(results), wall,
                             float(np.max(np.where(columns["within_budget"], columns["accuracy"], -np.inf)))))
                print(f"{algorithm}, batch {size}: {scored} candidates in {len(results)} trials, {wall:.1f} s = "
                      f"{scored / wall:.0f} candidates/s", flush=True)
                if algorithm == "nsga2":
                    break  # one generation per trial, whatever the batch
    session.close()
    print(f"\nthrough Tune, fmnist-small, budget {budget.describe()} (evolution and NSGA-II: generations of 100; "
          "the evolution's batch is whole generations):\n"
          "| algorithm | batch | candidates | trials | seconds | candidates/s | trials/s | best |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |")
    for algorithm, size, scored, trials, wall, best in rows:
        print(f"| {algorithm} | {size} | {scored} | {trials} | {wall:.1f} | {scored / wall:.0f} | {trials / wall:.1f} "
              f"| {best:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="apq-imagenet")
    parser.add_argument("--budget", default="latency=8.5ms")
    parser.add_argument("--predictor", help="a predictor file (default: untrained, same dims)")
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tune-candidates", type=int, default=50_000, help="evolution and random search")
    parser.add_argument("--optuna-candidates", type=int, default=1_000, help="TPE and NSGA-II")
    parser.add_argument("--batches", default="100,default",
                        help="candidates per trial, each side by side ('default': the algorithm's DEFAULT_BATCH)")
    parser.add_argument("--algorithms", default="evolution,random,tpe,nsga2")
    parser.add_argument("--no-local", action="store_true")
    parser.add_argument("--no-tune", action="store_true")
    args = parser.parse_args()
    if not args.no_local:
        local_driver(args.preset, args.budget, args.predictor, args.generations, args.threads)
    if not args.no_tune:
        batches = [None if b == "default" else int(b) for b in args.batches.split(",")]
        tune_rates(args.tune_candidates, args.optuna_candidates, batches, args.algorithms.split(","))


if __name__ == "__main__":
    main()

"""Search quality of the evolution with and without a distinct population, at equal candidates.

    python benchmarks/search_quality.py [--seeds 3] [--generations 500]
        [--case apq-imagenet:synthetic:latency=8.5ms] [--case fmnist-small:runs/fmnist-full/predictor/quant.pt:latency=0.15ms]

Each case is `preset:predictor:budget`, the predictor a predictor file or `synthetic` (the synthetic
ground truth, `SyntheticPredictor`). For every case and seed the same evolution runs twice,
`distinct=True` (the default: the population keeps distinct networks, proposals repeat none) and
`distinct=False` (APQ's evolution), and the best predicted accuracy within the budget is read after
1,000, 5,000, 10,000 and every candidate (`SearchResult.history`, one entry per generation), with
the number of distinct networks in the final population. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ems_ray.hardware import build_lut
from ems_ray.predictor import load_predictor
from ems_ray.search import Budget, CandidateScorer, EvolutionConfig, SyntheticPredictor, make_evolution
from ems_ray.search._local import drive
from ems_ray.space import Genome, resolve_space

CHECKPOINTS = (1_000, 5_000, 10_000)


def run_case(preset: str, predictor: str, budget: str, seeds: int, generations: int) -> list[str]:
    space = resolve_space(preset)
    table = build_lut(space)
    model = SyntheticPredictor(space) if predictor == "synthetic" else load_predictor(predictor, space)
    scorer, b = CandidateScorer(model, table), Budget.parse(budget)
    genome = Genome(space)
    rows = []
    for distinct in (True, False):
        cfg = EvolutionConfig(generations=generations, distinct=distinct)
        best, distinct_members, seconds = [], [], []
        for seed in range(seeds):
            evo = make_evolution(scorer, b, cfg, seed)
            result = drive("evolution", evo, scorer, b)
            history = np.asarray(result.history)  # best after each generation of population rows
            at = [history[min(c // cfg.population, len(history)) - 1] for c in CHECKPOINTS if c < result.scored]
            best.append(at + [history[-1]])
            distinct_members.append(len(np.unique(genome.canonical(evo.population), axis=0)))
            seconds.append(result.seconds)
        mean, std = np.mean(best, axis=0), np.std(best, axis=0)
        cells = " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in zip(mean, std))
        rows.append(f"| {preset} | {predictor} | {b.describe()} | {distinct} | {cells} | "
                    f"{np.mean(distinct_members):.0f} | {np.mean(seconds):.2f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", help="preset:predictor:budget (repeatable)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = args.case or ["apq-imagenet:synthetic:latency=8.5ms",
                          "fmnist-small:runs/fmnist-full/predictor/quant.pt:latency=0.15ms"]
    t0 = time.perf_counter()
    header = " | ".join([f"best at {c:,}" for c in CHECKPOINTS if c < args.generations * 100]
                        + [f"best at {args.generations * 100:,}"])
    print(f"| preset | predictor | budget | distinct | {header} | distinct members | seconds |")
    print("| --- " * (7 + len(header.split(" | ")) - 1) + "|")
    for case in cases:
        preset, predictor, budget = case.split(":")
        run_case(preset, predictor, budget, args.seeds, args.generations)
    print(f"\n{args.seeds} seeds per row, mean ± std; {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()

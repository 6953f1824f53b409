"""One Pareto run against one single-budget search per budget: does the front answer every budget?

    python benchmarks/bench_pareto.py [--config configs/fmnist-full.yaml --set run_dir=/tmp/x]
        [--budgets "latency=0.15ms;latency=0.3ms"] [--objectives accuracy,latency_ms] [--seeds 0 1 2]
        [--single generations=500] [--front population=300,parents=50] [--nsga2-samples 0]

With `--config`, the run's scorer (its trained predictor and LUT, as `ems-ray search` loads them)
and its `final.budgets`; without, fmnist-small with the synthetic predictor and budgets at the
20/50/80% quantiles of random sub-nets' latency. Per seed: the single-budget evolution
(`search.evolution`, fields overridden by `--single`) for each budget, and one `ParetoEvolution`
(`search.pareto.evolution`, overridden by `--front`) without limits; per budget the front's most
accurate point within it, minus the single-budget best, in points (the issue's check: >= -0.1).
`--nsga2-samples N` adds Optuna NSGA-II's front of N candidates (slow: Optuna's asks grow with the
study). Prints a Markdown table and a summary line.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ems_ray.hardware import build_lut
from ems_ray.search import (
    Budget, CandidateScorer, EvolutionConfig, Objectives, ParetoConfig, SyntheticPredictor, run_local_evolution,
    run_local_pareto,
)
from ems_ray.space import Genome, load_preset


def scorer_and_budgets(args) -> tuple[CandidateScorer, list[Budget], EvolutionConfig, EvolutionConfig]:
    if args.config:
        from ems_ray.config import load_run_config
        from ems_ray.search.stage import load_scorer

        overrides = dict(item.split("=", 1) for item in args.set or [])
        cfg = load_run_config(args.config, overrides)
        budgets = [Budget.parse(b) for b in (args.budgets or cfg.final.budgets)]
        return load_scorer(cfg.context(), cfg.search), budgets, cfg.search.evolution, cfg.search.pareto.evolution
    space = load_preset("fmnist-small")
    table = build_lut(space)
    lat = table.score(Genome(space).sample(np.random.default_rng(0), 400))["latency_ms"]
    budgets = [Budget.parse(b) for b in args.budgets] if args.budgets else [
        Budget(latency_ms=round(float(np.quantile(lat, q)), 4)) for q in (0.2, 0.5, 0.8)]
    return CandidateScorer(SyntheticPredictor(space), table), budgets, EvolutionConfig(), ParetoConfig().evolution


def _fields(text: str) -> dict[str, int | float]:
    return {k: float(v) if "." in v else int(v) for k, v in (item.split("=", 1) for item in text.split(","))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    parser.add_argument("--budgets", type=lambda t: t.split(";"), help="budgets joined by ';'")
    parser.add_argument("--objectives", default="accuracy,latency_ms")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--single", type=_fields, default={}, help="single-budget EvolutionConfig fields, k=v,...")
    parser.add_argument("--front", type=_fields, default={}, help="ParetoEvolution EvolutionConfig fields, k=v,...")
    parser.add_argument("--nsga2-samples", type=int, default=0)
    args = parser.parse_args()

    scorer, budgets, single, front_cfg = scorer_and_budgets(args)
    single = EvolutionConfig(**{**single.model_dump(), **args.single})
    front_cfg = EvolutionConfig(**{**front_cfg.model_dump(), **args.front})
    print(f"single-budget: {single.model_dump()}\nfront: {front_cfg.model_dump()}", flush=True)
    objectives = Objectives.parse(args.objectives)
    rows, diffs = [], []
    for seed in args.seeds:
        fronts = []
        t0 = time.perf_counter()
        fronts.append(run_local_pareto(scorer, objectives, None, "evolution", front_cfg, seed=seed))
        if args.nsga2_samples:
            fronts.append(run_local_pareto(scorer, objectives, None, "nsga2", front_cfg, args.nsga2_samples, seed))
        for budget in budgets:
            t = time.perf_counter()
            best = run_local_evolution(scorer, budget, single, seed=seed)
            single_s = time.perf_counter() - t
            for front in fronts:
                i = front.best_within(budget)
                acc = float("nan") if i is None else float(front.scores["accuracy"][i])
                diff = 100 * (acc - best.scores["accuracy"])
                if front.algorithm == "evolution":
                    diffs.append(diff)
                rows.append((seed, budget.describe(), best.scored, f"{best.scores['accuracy']:.4f}", f"{single_s:.2f}",
                             front.algorithm, front.scored, len(front), f"{front.seconds:.2f}", f"{acc:.4f}",
                             f"{diff:+.2f}", f"{front.hypervolume_normalized:.4f}"))
        print(f"seed {seed} done in {time.perf_counter() - t0:.1f} s", flush=True)
    header = ("seed", "budget", "single: scored", "single: best", "single: s", "front: algorithm", "front: scored",
              "front: points", "front: s", "front: best within", "Δ (points)", "front: HV (normalized)")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    print(f"ParetoEvolution minus single-budget best over {len(diffs)} (seed, budget) pairs: mean {np.mean(diffs):+.3f}, "
          f"worst {min(diffs):+.3f}, best {max(diffs):+.3f} points; within -0.1 points: "
          f"{sum(d >= -0.1 for d in diffs)}/{len(diffs)}")


if __name__ == "__main__":
    main()

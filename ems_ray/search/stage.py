"""The search stage of a run: predictor + LUT in, `<run_dir>/search/<budget>/` out.

    <run_dir>/search/<budget>/best.yaml     the best sub-net (`SubnetConfig`, for `ems-ray export`)
    <run_dir>/search/<budget>/result.json   algorithm, budget, scores, candidates scored, time, history

Takes the run's shared settings (`RunContext`: run folder, seed, Ray, cost table) and its `search`
section.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ems_ray.errors import InputError

from ._local import SearchResult, run_local_evolution, run_local_random
from ._scoring import CandidateScorer, check_feasible
from .config import Budget

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable
    from ems_ray.run_context import RunContext

    from .config import SearchConfig


def load_scorer(run: RunContext, config: SearchConfig, table: CostTable | None = None) -> CandidateScorer:
    """The scorer of `search.predictor` (the quantization-aware one when there is one) on `table`
    (default: the run's cost table)."""
    from ems_ray.hardware import run_cost_table
    from ems_ray.predictor import load_run_predictors

    table = table or run_cost_table(run)
    fp, quant = load_run_predictors(run.run_dir, table.space)
    which = config.predictor
    if which == "quant" and quant is None:
        raise FileNotFoundError(f"search.predictor is 'quant' but {run.layout.predictor('quant')} "
                                "does not exist")
    return CandidateScorer(fp if which == "fp" or quant is None else quant, table)


def save_result(result: SearchResult, scorer: CandidateScorer, out_dir: str | Path) -> Path:
    from ems_ray.space import Genome

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.subnet(Genome(scorer.space)).to_yaml(out_dir / "best.yaml")
    (out_dir / "result.json").write_text(json.dumps(result.to_json(), indent=1, sort_keys=True))
    return out_dir


def prepare_search(run: RunContext, config: SearchConfig, budget: Budget | str | None,
                   scorer: CandidateScorer | None = None) -> tuple[Budget, CandidateScorer]:
    """The budget (`budget`, else `search.budget`), checked against the LUT before the predictors
    load so a bad budget fails fast, and the run's scorer (unless one is given)."""
    budget = budget if budget is not None else config.budget
    if budget is None:
        raise InputError("no budget: pass --budget latency=...ms (or energy=...mJ, bitops=...G) or set search.budget")
    budget = budget if isinstance(budget, Budget) else Budget.parse(budget)
    from ems_ray.hardware import run_cost_table

    table = scorer.table if scorer is not None else run_cost_table(run)
    check_feasible(table, budget)
    return budget, scorer or load_scorer(run, config, table)


def run_search_stage(run: RunContext, config: SearchConfig, budget: Budget | str | None = None,
                     scorer: CandidateScorer | None = None) -> tuple[SearchResult, Path]:
    """Search the run's space under `budget` (default `search.budget`) and save the best sub-net."""
    sc = config
    budget, scorer = prepare_search(run, sc, budget, scorer)
    out = run.layout.search(budget)
    if sc.mode == "local" and sc.algorithm == "evolution":
        result = run_local_evolution(scorer, budget, sc.evolution, run.seed, check=False)
    elif sc.mode == "local" and sc.algorithm == "random":
        result = run_local_random(scorer, budget, sc.num_samples, run.seed, check=False,
                                  max_resample_rounds=sc.evolution.max_resample_rounds)
    else:
        from ems_ray.ray_session import ray_session

        from .compare import tune_loggers
        from .tune import run_tune_search

        callbacks = tune_loggers(sc.tracking) if sc.tracking.mlflow is not None else None  # None: Tune's defaults
        with ray_session(run.ray):
            result = run_tune_search(scorer, budget, sc.algorithm, sc.evolution, sc.num_samples, run.seed,
                                     storage=out / "tune", name=sc.algorithm, max_concurrent=sc.max_concurrent,
                                     check=False, batch=sc.batch, callbacks=callbacks)
    return result, save_result(result, scorer, out)

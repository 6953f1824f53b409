"""The pipeline's stages in order: what each runs, which config sections it depends on, what it
reads and what it writes (paths relative to the run directory).

Each stage calls the same function as its `ems-ray` sub-command; those functions resume on their
own (super-network checkpoints, collection shards, per-budget final results), so the pipeline only
decides *whether* to call a stage, never how to resume it. This table is where the run config is
taken apart: each stage function gets the run's shared settings (`cfg.context()`, a `RunContext`)
and the sections it depends on, never the whole `RunConfig`, so the stage packages never import
`ems_ray.config`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ems_ray.run_layout import RunLayout
from ems_ray.search.config import Budget

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ems_ray.config import RunConfig

def run_budgets(cfg: RunConfig) -> list[Budget]:
    """The budgets a run searches and measures: `final.budgets`, else `search.budget`."""
    texts = list(cfg.final.budgets) or ([cfg.search.budget] if cfg.search.budget else [])
    return [Budget.parse(t) for t in texts]


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RunConfig, bool], object]  # (cfg, use_ray)
    settings: Callable[[RunConfig], dict]  # the config the stage's result depends on
    outputs: Callable[[RunConfig], list[str]]
    after: tuple[str, ...] = ()  # stages whose outputs are this stage's inputs
    # reads the outputs back with their own readers, which verify their digests: a stage is done only
    # when this passes (it raises the reader's named error for a damaged file)
    check: Callable[[RunConfig], object] | None = None


def _dump(model) -> dict:
    return model.model_dump(mode="json")


def _common(cfg: RunConfig) -> dict:
    return {"space": cfg.space, "seed": cfg.seed, "data": _dump(cfg.data)}


def _run_lut(cfg: RunConfig, use_ray: bool) -> None:
    from ems_ray.hardware import build_run_table

    logger.info(build_run_table(cfg.context(), use_ray).summary())


def _lut_settings(cfg: RunConfig) -> dict:
    """The space, and the hardware target where it is not the default (so older runs keep their fingerprint)."""
    from ems_ray.hardware.targets import BitFusionTarget

    hardware = _dump(cfg.hardware)
    return {"space": cfg.space, **({"hardware": hardware} if hardware != _dump(BitFusionTarget()) else {})}


def _check_lut(cfg: RunConfig) -> None:
    from ems_ray.hardware import CostTable

    CostTable.load(RunLayout.of(cfg).lut, cfg.search_space(), target=cfg.hardware)


def _check_supernet(cfg: RunConfig) -> None:
    from ems_ray.supernet.checkpoint import read_supernet_file

    read_supernet_file(RunLayout.of(cfg).supernet)


def _check_collected(kind: str) -> Callable[[RunConfig], None]:
    def check(cfg: RunConfig) -> None:
        from ems_ray.collect import ShardStore

        ShardStore(RunLayout.of(cfg).collected(kind)).scan()
    return check


def _check_predictors(cfg: RunConfig) -> None:
    from ems_ray.predictor import load_run_predictors
    from ems_ray.predictor._files import read_predictor_summary

    layout = RunLayout.of(cfg)
    read_predictor_summary(layout.predictor_metrics)
    load_run_predictors(layout.root, cfg.search_space())


def _supernet_settings(cfg: RunConfig) -> dict:
    from ems_ray.train.stage import schedule_fingerprint

    return {"schedule": schedule_fingerprint(cfg.context(), cfg.supernet)}


def _run_supernet(cfg: RunConfig, use_ray: bool) -> None:
    from ems_ray.train import run_supernet_stage

    run_supernet_stage(cfg.context(), cfg.supernet, use_ray=use_ray)


def _collect(kind: str) -> Callable[[RunConfig, bool], None]:
    def run(cfg: RunConfig, use_ray: bool) -> None:
        from ems_ray.collect import run_collect_stage

        s = run_collect_stage(cfg.context(), cfg.collect, kind, quant=cfg.quant, use_ray=use_ray)
        logger.info(f"[collect {kind}] {s.total_points}/{s.target_points} points ({s.new_points} new, "
                    f"{s.points_per_min:.1f} points/min)")
    return run


def _collect_settings(kind: str) -> Callable[[RunConfig], dict]:
    def settings(cfg: RunConfig) -> dict:
        c = cfg.collect
        out = {**_common(cfg), "points": c.points(kind),
               "collect": c.model_dump(mode="json", exclude={"resources", "backend", "fp_points", "quant_points",
                                                             "quant_recipe", "progress_every_s"})}
        if kind == "quant":
            out["recipe"] = _dump(c.quant_recipe or cfg.quant)
        return out
    return settings


def _run_predictor(cfg: RunConfig, use_ray: bool) -> None:
    from ems_ray.predictor import run_predictor_stage

    run_predictor_stage(cfg.context(), cfg.predictor)


def _search_settings(cfg: RunConfig, with_pareto: bool) -> dict:
    """The `search` section as a stage's settings; `search.pareto` only where it counts (a front is
    asked for and the stage makes it), so runs from before it existed stay current."""
    keep_pareto = with_pareto and bool(cfg.search.pareto.objectives)
    return cfg.search.model_dump(mode="json", exclude=None if keep_pareto else {"pareto"})


def _run_search(cfg: RunConfig, use_ray: bool) -> None:
    from ems_ray.hardware import run_cost_table
    from ems_ray.search.stage import load_scorer, run_search_stage

    run = cfg.context()
    scorer = load_scorer(run, cfg.search, run_cost_table(run))  # loaded once for every budget
    for budget in run_budgets(cfg):
        result, out = run_search_stage(run, cfg.search, budget, scorer=scorer)
        logger.info(f"[search] {budget.describe()}: predicted accuracy {result.scores['accuracy']:.4f} "
                    f"({result.scored} candidates in {result.seconds:.2f} s) -> {out}")
    if cfg.search.pareto.objectives:
        from ems_ray.search.pareto import run_pareto_stage

        run_pareto_stage(run, cfg.search, scorer=scorer)


def _search_outputs(run: RunLayout, cfg: RunConfig) -> list[Path]:
    """best.yaml per budget, and the front (`search.pareto`) when one is asked for."""
    paths = [run.search(b) / "best.yaml" for b in run_budgets(cfg)]
    pareto = cfg.search.pareto
    if pareto.objectives:
        from ems_ray.search.config import Objectives

        budget = Budget.parse(pareto.budget) if pareto.budget else None
        paths.append(run.pareto(Objectives.parse(pareto.objectives), budget) / "front.parquet")
    return paths


def _run_compare(cfg: RunConfig, use_ray: bool) -> None:
    from ems_ray.search.compare import run_compare_stage

    run_compare_stage(cfg.context(), cfg.search, run_budgets(cfg)[0])


def _run_final(cfg: RunConfig, use_ray: bool) -> None:
    from ems_ray.final import run_final_stage

    run_final_stage(cfg.context(), cfg.final, search=cfg.search, predictor=cfg.predictor, quant=cfg.quant,
                    use_ray=use_ray)


def _run_report(cfg: RunConfig, use_ray: bool) -> None:
    from ems_ray.report import run_report_stage

    run_report_stage(cfg.context())


def _outputs(paths: Callable[[RunLayout, RunConfig], list[Path]]) -> Callable[[RunConfig], list[str]]:
    """A stage's outputs as the manifest records them: relative to the run directory."""
    def outputs(cfg: RunConfig) -> list[str]:
        layout = RunLayout.of(cfg)
        return [layout.relative(p) for p in paths(layout, cfg)]
    return outputs


STAGES: tuple[Stage, ...] = (
    Stage("lut", _run_lut, _lut_settings, _outputs(lambda run, cfg: [run.lut]), check=_check_lut),
    Stage("supernet", _run_supernet, _supernet_settings, _outputs(lambda run, cfg: [run.supernet]),
          check=_check_supernet),
    Stage("collect-fp", _collect("fp"), _collect_settings("fp"), _outputs(lambda run, cfg: [run.collected("fp")]),
          ("supernet",), _check_collected("fp")),
    Stage("collect-quant", _collect("quant"), _collect_settings("quant"),
          _outputs(lambda run, cfg: [run.collected("quant")]), ("supernet",), _check_collected("quant")),
    Stage("predictor", _run_predictor,
          lambda cfg: {"seed": cfg.seed, "predictor": cfg.predictor.model_dump(mode="json", exclude={"threads"})},
          _outputs(lambda run, cfg: [run.predictor("fp"), run.predictor("quant")]), ("collect-fp", "collect-quant"),
          _check_predictors),
    Stage("search", _run_search,
          lambda cfg: {"seed": cfg.seed, "search": _search_settings(cfg, with_pareto=True),
                       "budgets": [b.describe() for b in run_budgets(cfg)]},
          _outputs(_search_outputs), ("lut", "predictor")),
    Stage("final", _run_final,
          lambda cfg: {**_common(cfg), "final": _dump(cfg.final), "quant": _dump(cfg.quant)},
          _outputs(lambda run, cfg: [run.final_summary]), ("supernet", "predictor", "search")),
    Stage("compare", _run_compare,
          lambda cfg: {"seed": cfg.seed, "search": _search_settings(cfg, with_pareto=False),
                       "budget": run_budgets(cfg)[0].describe()},
          _outputs(lambda run, cfg: [run.compare(run_budgets(cfg)[0]) / "summary.csv"]), ("lut", "predictor")),
    Stage("report", _run_report, lambda cfg: {"name": cfg.name}, _outputs(lambda run, cfg: [run.report]),
          ("final", "compare")),
)
STAGE_NAMES = tuple(s.name for s in STAGES)

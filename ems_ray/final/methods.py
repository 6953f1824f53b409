"""The final stage's methods, one registry: the joint search and the baselines it is compared with.

Each entry says how the method chooses its sub-net under a budget, which of the run's predictors
(and which extra settings) its result depends on, and how the report plots it, so adding a
baseline is one entry here. `choose` receives the final stage's loaded inputs (`stage._Inputs`:
scorers for the run's `fp`, `quant` and, when used, `no-transfer` predictors, the run's shared
settings `run`, and the `final` and `search` sections it was given);
heavy imports stay inside the functions, so the config can list the names without loading torch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ems_ray.search import SearchResult
    from ems_ray.search.config import Budget

    from .config import FinalConfig


@dataclass(frozen=True)
class FinalMethod:
    name: str
    summary: str
    predictors: tuple[str, ...]  # the run predictors a result depends on: 'fp', 'quant', 'no-transfer'
    choose: Callable[[Any, Budget], SearchResult]  # (final-stage inputs, budget) -> the chosen sub-net
    marker: str  # matplotlib marker in the report's accuracy/latency plot
    settings: Callable[[FinalConfig], dict] = lambda final: {}  # extra config a result depends on


def _joint(inputs, budget: Budget) -> SearchResult:
    """The run's own search result for this budget when it was made with the same scorer, else a
    new search (the pipeline's search stage usually ran already)."""
    from ems_ray.search import run_search_stage

    from ._choose import read_search_result

    run, search = inputs.run, inputs.search_config
    reused = read_search_result(run.layout.search(budget), inputs.quant, budget, search.algorithm)
    return reused or run_search_stage(run, search, budget, scorer=inputs.quant)[0]


def _fixed8(inputs, budget: Budget) -> SearchResult:
    from ._choose import fixed_bits_search

    return fixed_bits_search(inputs.quant, budget, inputs.search_config.evolution, inputs.run.seed)


def _sequential(inputs, budget: Budget) -> SearchResult:
    from ._choose import sequential_search

    return sequential_search(inputs.fp, inputs.quant, budget, inputs.final.sequential,
                             inputs.search_config.evolution, inputs.run.seed)


def _no_transfer(inputs, budget: Budget) -> SearchResult:
    from ems_ray.search import run_local_evolution

    result = run_local_evolution(inputs.no_transfer, budget, inputs.search_config.evolution, inputs.run.seed,
                                 check=False)
    result.algorithm = "no-transfer"
    return result


FINAL_METHODS: dict[str, FinalMethod] = {m.name: m for m in (
    FinalMethod("ems", "joint architecture + pruning + bits search, transferred predictor", ("quant",), _joint, "o"),
    FinalMethod("fixed8", "the joint search with every layer at 8 bits", ("quant",), _fixed8, "s"),
    FinalMethod("sequential", "architecture, then pruning, then bits (the staged pipeline)", ("fp", "quant"),
                _sequential, "^", lambda final: {"sequential": final.sequential.model_dump(mode="json")}),
    FinalMethod("no-transfer", "the joint search with a quantization-aware predictor trained from scratch",
                ("no-transfer",), _no_transfer, "D"),
)}
METHODS: tuple[str, ...] = tuple(FINAL_METHODS)

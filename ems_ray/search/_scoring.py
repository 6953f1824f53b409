"""Scoring candidates: predicted accuracy (predictor) plus LUT costs, budget checks, cheapest costs.

Everything here takes whole (n, genome width) gene arrays, so a generation is one predictor call
and one LUT gather.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ems_ray.errors import InputError
from ems_ray.space import Genome, SearchSpace
from ems_ray.space.genome import GENES_PER_SLOT

from ._pareto import hypervolume_of
from .config import BUDGET_UNITS, Budget

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable

logger = logging.getLogger(__name__)

COST_KEYS = ("latency_ms", "energy_mj", "macs", "bitops")
_UNIT_OF = {score_key: (unit, scale) for score_key, unit, scale in BUDGET_UNITS.values()}
_NAME_OF = {score_key: name for name, (score_key, _, _) in BUDGET_UNITS.items()}


class InfeasibleBudgetError(InputError):
    """No sub-net of the space fits the budget (or the search cannot find one that does)."""


class Predictor(Protocol):
    def predict(self, genes: np.ndarray) -> np.ndarray: ...


class SyntheticPredictor:
    """The synthetic ground truth (`ems_ray.predictor.synthetic_accuracy`, quantized accuracy) as a
    predictor: deterministic numpy, for tests and benchmarks before a predictor is trained."""

    def __init__(self, space: SearchSpace):
        self.space = space

    def predict(self, genes: np.ndarray) -> np.ndarray:
        from ems_ray.predictor import synthetic_accuracy

        return synthetic_accuracy(self.space, np.atleast_2d(genes))[1]


def gene_names(genome: Genome) -> list[str]:
    """One name per gene column: `depth{stage}`, then `b{slot}_{kernel|mid|pw_w|pw_a|dw_w|dw_a}`."""
    fields = ("kernel", "mid", "pw_w", "pw_a", "dw_w", "dw_a")
    assert len(fields) == GENES_PER_SLOT
    names = [f"depth{s}" for s in range(genome.n_stages)]
    for slot in range(genome.n_slots):
        names += [f"b{slot:02d}_{f}" for f in fields]
    return names


def format_cost(key: str, value: float) -> str:
    if key in _UNIT_OF:
        unit, scale = _UNIT_OF[key]
        return f"{value / scale:.4g} {unit}"
    return f"{value / 1e6:.4g} MMACs" if key == "macs" else f"{value:.4g}"


def within(costs: dict[str, np.ndarray], budget: Budget) -> np.ndarray:
    """(n,) bool: which rows of LUT `costs` respect every limit of `budget`."""
    n = len(next(iter(costs.values())))
    ok = np.ones(n, dtype=bool)
    for key, limit in budget.limits().items():
        ok &= costs[key] <= limit
    return ok


def fits(table: CostTable, budget: Budget, genes: np.ndarray) -> np.ndarray:
    """`within(table.score(genes), budget)`, gathering only the costs the budget limits: the test
    every proposal of a search passes before it is scored."""
    return within(table.score(genes, tuple(budget.limits())), budget)


def pareto_front(accuracy: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated (accuracy max, cost min) points, by increasing cost (ties: the
    most accurate point of equal cost only)."""
    accuracy, cost = np.asarray(accuracy, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    front, best = [], -np.inf
    for i in np.lexsort((-accuracy, cost)):
        if accuracy[i] > best:
            front.append(int(i))
            best = accuracy[i]
    return np.asarray(front, dtype=np.int64)


def _extreme_costs(table: CostTable, smallest: bool) -> dict[str, float]:
    """The smallest (or largest) latency, energy, MACs and BitOps any sub-net can have: every
    stage at its fewest (most) blocks, each active block at its own cheapest (dearest) choices."""
    genome = table.genome
    space = table.space
    pick_depth, reduce = (np.argmin, np.min) if smallest else (np.argmax, np.max)
    base = np.zeros((1, genome.width), dtype=np.int16)
    for s, stage in enumerate(space.stages):
        base[0, s] = int(pick_depth(stage.depth_choices))
    base_costs = table.score(base)
    total = {k: float(base_costs[k][0]) for k in COST_KEYS}
    active = genome.active(base)[0]
    for slot in np.flatnonzero(active):
        costs = table.score(genome.slot_variants(base, slot))
        with np.errstate(invalid="ignore"):  # inf - inf: a precision the target cannot run
            for k in COST_KEYS:
                total[k] += float(reduce(costs[k]) - base_costs[k][0])
    return total


def hypervolume(accuracy: np.ndarray, cost: np.ndarray, cost_limit: float) -> float:
    """Area dominated by the (accuracy max, cost min) points up to the reference point
    (accuracy 0, cost `cost_limit`); points at or beyond the limit add nothing."""
    points = np.stack([-np.asarray(accuracy, dtype=np.float64), np.asarray(cost, dtype=np.float64)], axis=1)
    return hypervolume_of(points, np.asarray([0.0, cost_limit]))


def cheapest_costs(table: CostTable) -> dict[str, float]:
    """The smallest latency, energy, MACs and BitOps any sub-net of the table's space can have.

    Costs are sums of non-negative per-block terms, so each minimum is the fewest blocks (smallest
    depth of every stage) with every active block at its own cheapest (kernel, width, bits): each
    block's choices are enumerated exhaustively, which stays exact even where the cheapest choice is
    not the smallest (6-bit runs at 8-bit speed, for one)."""
    return _extreme_costs(table, smallest=True)


def costliest_costs(table: CostTable) -> dict[str, float]:
    """The largest latency, energy, MACs and BitOps any sub-net can have (as `cheapest_costs`, the
    other way round): a limit above it constrains nothing."""
    return _extreme_costs(table, smallest=False)


def check_feasible(table: CostTable, budget: Budget) -> dict[str, float]:
    """Raise `InfeasibleBudgetError` naming the cheapest possible cost when a limit is below it;
    returns the cheapest costs. Logs the budget as applied, and any limit that constrains nothing."""
    logger.info("budget: %s", budget.applied())
    cheapest = cheapest_costs(table)
    problems = [
        f"{_NAME_OF[key]} budget {format_cost(key, limit)} is below the cheapest possible "
        f"{format_cost(key, cheapest[key])}"
        for key, limit in budget.limits().items() if limit < cheapest[key]
    ]
    if problems:
        raise InfeasibleBudgetError(
            f"budget {budget.describe()} is infeasible for search space '{table.space.name}': " + "; ".join(problems))
    costliest = costliest_costs(table)
    for key, limit in budget.limits().items():
        if limit >= costliest[key]:
            logger.warning("%s budget %s is above the costliest sub-net of '%s' (%s): it constrains nothing",
                           _NAME_OF[key], format_cost(key, limit), table.space.name, format_cost(key, costliest[key]))
    return cheapest


class CandidateScorer:
    """Predicted accuracy and LUT costs of gene rows; the one scoring path of every searcher."""

    def __init__(self, predictor: Predictor, table: CostTable):
        self.predictor = predictor
        self.table = table

    @property
    def space(self) -> SearchSpace:
        return self.table.space

    def accuracy(self, genes: np.ndarray) -> np.ndarray:
        genes = np.atleast_2d(genes)
        if _gathers(self.predictor):
            return _gathered_accuracy(self.predictor, genes)
        return np.asarray(self.predictor.predict(genes), dtype=np.float64)

    def costs(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        return self.table.score(genes)

    def score(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        """{"accuracy", "latency_ms", "energy_mj", "macs", "bitops"} arrays, one entry per row."""
        return {"accuracy": self.accuracy(genes), **self.costs(genes)}

    def score_one(self, row: np.ndarray, budget: Budget | None = None) -> dict[str, float]:
        """Python-scalar scores of one row (`within_budget` added when a budget is given)."""
        scores = {k: v[0].item() for k, v in self.score(np.asarray(row)[None, :]).items()}
        if budget is not None:
            scores["within_budget"] = bool(within({k: np.asarray([v]) for k, v in scores.items()}, budget)[0])
        return scores


def _gathers(predictor) -> bool:
    """An `AccuracyPredictor` (an encoding and an MLP that takes active indices), without importing torch."""
    return hasattr(predictor, "encoding") and hasattr(getattr(predictor, "model", None), "forward_active")


def _gathered_accuracy(predictor, genes: np.ndarray) -> np.ndarray:
    """`predictor.predict(genes)` to float rounding, the first layer gathered: a candidate activates
    6 features per block of several hundred (`Encoding.active_indices`), so its first-layer product
    is a sum of a few weight rows (`MLPPredictor.forward_active`)."""
    import torch

    indices = torch.from_numpy(predictor.encoding.active_indices(genes, fp_only=predictor.kind == "fp"))
    with torch.inference_mode():
        accuracy = predictor.model.forward_active(indices.to(predictor.device))
    return accuracy.float().cpu().numpy().astype(np.float64)

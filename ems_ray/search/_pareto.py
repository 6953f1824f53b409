"""Pareto fronts over predicted accuracy and LUT costs: objectives, non-dominated sorting, crowding,
hypervolume, and an archive of the non-dominated candidates a search has scored.

Everything works on (n, m) arrays of objective values to *minimise*: `objective_matrix` turns
scores into them (accuracy negated, costs as they are), so "a dominates b" is the usual
`all(a <= b) and any(a < b)`.

    points = objective_matrix(scorer.score(genes), ("accuracy", "latency_ms"))
    ranks = nondominated_ranks(points)               # 0: the first (non-dominated) front
    spread = crowding_distance(points[ranks == 0])   # NSGA-II's tie-break inside a front
    hypervolume_of(points, reference)                # the volume the front dominates up to `reference`
"""
from __future__ import annotations

import numpy as np

from .config import ACCURACY

def objective_matrix(scores: dict[str, np.ndarray], objectives: tuple[str, ...]) -> np.ndarray:
    """(n, m) float64 values to minimise: accuracy negated (NaN as the worst, +inf), costs as they are."""
    columns = []
    for key in objectives:
        values = np.asarray(scores[key], dtype=np.float64)
        if key == ACCURACY:
            values = np.where(np.isnan(values), np.inf, -values)
        columns.append(values)
    return np.stack(columns, axis=1)


def dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) bool: a[i] dominates b[j] (no worse in every objective, better in one)."""
    a, b = a[:, None, :], b[None, :, :]
    return np.all(a <= b, axis=2) & np.any(a < b, axis=2)


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """(n,) int: the non-dominated front each point is in (NSGA-II's sorting: 0 is the set no point
    dominates, 1 the set only front 0 dominates, ...). O(n^2 m) in numpy: fine for a population
    plus its children (hundreds)."""
    points = np.asarray(points, dtype=np.float64)
    beaten_by = dominates(points, points)  # [i, j]: i dominates j
    count = beaten_by.sum(axis=0)  # how many points dominate j
    ranks = np.full(len(points), -1, dtype=np.int64)
    rank, current = 0, np.flatnonzero(count == 0)
    while len(current):
        ranks[current] = rank
        count = count - beaten_by[current].sum(axis=0)
        count[ranks >= 0] = -1
        rank, current = rank + 1, np.flatnonzero(count == 0)
    return ranks


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """(n,) NSGA-II crowding distance of the points of one front: per objective, the normalised gap
    between each point's two neighbours, summed; the extremes of each objective are infinite (always
    kept). An objective with an infinite or zero span adds nothing."""
    points = np.asarray(points, dtype=np.float64)
    n, m = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(points[:, j], kind="stable")
        column = points[order, j]
        distance[order[[0, -1]]] = np.inf
        span = column[-1] - column[0]
        if np.isfinite(span) and span > 0:
            distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def nsga2_order(points: np.ndarray) -> np.ndarray:
    """Indices of `points`, best first: by front (rank), then by crowding distance, largest first
    (stable, so ties keep their order). Truncating it is NSGA-II's environmental selection."""
    ranks = nondominated_ranks(points)
    crowding = np.zeros(len(points))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        crowding[members] = crowding_distance(points[members])
    return np.lexsort((-crowding, ranks))


def hypervolume_of(points: np.ndarray, reference: np.ndarray) -> float:
    """The volume dominated by `points` (to minimise) and bounded by `reference`; points not strictly
    better than the reference in every objective add nothing. Exact: a 2-D sweep, and for more
    objectives slices along the last one (O(n^2 log n) for three: a front of a few thousand points
    takes well under a second)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, len(reference))
    reference = np.asarray(reference, dtype=np.float64)
    points = points[np.all(points < reference, axis=1)]
    if not len(points):
        return 0.0
    if points.shape[1] == 1:
        return float(reference[0] - points[:, 0].min())
    if points.shape[1] == 2:
        p = points[np.lexsort((points[:, 1], points[:, 0]))]  # by the first objective
        height = reference[1] - np.minimum.accumulate(p[:, 1])  # dominated height from each x onwards
        width = np.diff(np.append(p[:, 0], reference[0]))
        return float(np.sum(width * height))
    p = points[np.argsort(points[:, -1], kind="stable")]
    thickness = np.diff(np.append(p[:, -1], reference[-1]))
    return float(sum(t * hypervolume_of(p[: i + 1, :-1], reference[:-1])
                     for i, t in enumerate(thickness) if t > 0))


class ParetoArchive:
    """The non-dominated set of every candidate merged so far, one row per distinct network.

    `merge(canonical, rows, points)` takes a scored batch (`canonical`: its rows' canonical genes,
    `Genome.canonical`, so two rows of one network count once); a point joins when no archived point dominates it (nor an equal one
    is there), and archived points it dominates leave. Each merge compares the batch with the
    archive only, so a search of 50,000 candidates keeps its front at a cost of (front size x batch).
    """

    def __init__(self, width: int, objectives: int):
        self.rows = np.zeros((0, width), dtype=np.int16)
        self.points = np.zeros((0, objectives))
        self._keys: list[bytes] = []

    def __len__(self) -> int:
        return len(self.rows)

    def merge(self, canonical: np.ndarray, rows: np.ndarray, points: np.ndarray) -> None:
        keys = [row.tobytes() for row in np.ascontiguousarray(canonical, dtype=np.int16)]
        points = np.asarray(points, dtype=np.float64)
        finite = np.all(np.isfinite(points), axis=1)
        known = set(self._keys)
        fresh: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if finite[i] and key not in known:
                fresh.setdefault(key, i)
        take = np.fromiter(fresh.values(), dtype=np.intp, count=len(fresh))
        new_rows, new_points, new_keys = rows[take], points[take], list(fresh)
        # among the batch: its own non-dominated points, one of each set of equal points
        keep = ~dominates(new_points, new_points).any(axis=0) & _first_of_equals(new_points)
        if len(self.points):
            keep &= ~dominates(self.points, new_points).any(axis=0)
            keep &= ~(self.points[:, None, :] == new_points[None, :, :]).all(axis=2).any(axis=0)
        new_rows, new_points = new_rows[keep], new_points[keep]
        new_keys = [k for k, ok in zip(new_keys, keep) if ok]
        stay = ~dominates(new_points, self.points).any(axis=0) if len(self.points) else np.zeros(0, bool)
        self.rows = np.concatenate([self.rows[stay], new_rows]).astype(np.int16)
        self.points = np.concatenate([self.points[stay], new_points])
        self._keys = [k for k, ok in zip(self._keys, stay) if ok] + new_keys

    def order(self) -> np.ndarray:
        """Archive indices by the first cost (then the next), the usual reading order of a front."""
        costs = [self.points[:, j] for j in range(self.points.shape[1] - 1, 0, -1)]  # lexsort: last key first
        return np.lexsort(costs) if len(self) else np.zeros(0, dtype=np.intp)

    def get_state(self) -> dict:
        return {"rows": self.rows.copy(), "points": self.points.copy(), "keys": list(self._keys)}

    def set_state(self, state: dict) -> None:
        self.rows, self.points, self._keys = state["rows"].copy(), state["points"].copy(), list(state["keys"])


def _first_of_equals(points: np.ndarray) -> np.ndarray:
    """(n,) bool: True for the first of each group of identical points."""
    if not len(points):
        return np.zeros(0, dtype=bool)
    _, first = np.unique(points, axis=0, return_index=True)
    mask = np.zeros(len(points), dtype=bool)
    mask[first] = True
    return mask

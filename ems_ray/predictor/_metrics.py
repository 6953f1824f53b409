"""How well a predictor orders sub-nets: RMSE, Kendall tau-b and pairwise accuracy.

Pairwise accuracy is the paper's metric (section 5.3): the share of held-out pairs whose order the
predictor gets right. Ties: a pair whose true accuracies are equal has no right order and is left
out; a pair the predictor scores equal counts as half right (a coin toss), so a constant predictor
scores 0.5, a perfect one 1.0 and a reversed one 0.0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ems_ray.errors import InputError

_CHUNK = 1024  # rows compared at once: bounds memory at _CHUNK * n signs


@dataclass(frozen=True)
class PairCounts:
    """Counts over all unordered pairs (i < j)."""

    concordant: int
    discordant: int
    tied_true: int  # equal truth (whatever the prediction)
    tied_pred: int  # equal prediction (whatever the truth)
    tied_both: int
    total: int


def pair_counts(y_true: np.ndarray, y_pred: np.ndarray) -> PairCounts:
    """Exact O(n^2) pair counts, computed in row chunks (n of a few thousand takes milliseconds)."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise InputError(f"y_true has {t.size} values, y_pred {p.size}")
    n = t.size
    conc = disc = tt = tp = tb = 0
    for start in range(0, n, _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, n))
        upper = np.arange(n)[None, :] > rows[:, None]  # pairs i < j only
        st = np.sign(t[None, :] - t[rows, None])[upper]
        sp = np.sign(p[None, :] - p[rows, None])[upper]
        prod = st * sp
        conc += int(np.count_nonzero(prod > 0))
        disc += int(np.count_nonzero(prod < 0))
        tt += int(np.count_nonzero(st == 0))
        tp += int(np.count_nonzero(sp == 0))
        tb += int(np.count_nonzero((st == 0) & (sp == 0)))
    return PairCounts(conc, disc, tt, tp, tb, n * (n - 1) // 2)


def _tau_b(c: PairCounts) -> float:
    denom = np.sqrt(float(c.total - c.tied_true) * float(c.total - c.tied_pred))
    return float((c.concordant - c.discordant) / denom) if denom > 0 else float("nan")


def _pairwise(c: PairCounts) -> float:
    decidable = c.total - c.tied_true
    half = c.tied_pred - c.tied_both  # predicted equal, truly different
    return float((c.concordant + 0.5 * half) / decidable) if decidable else float("nan")


def kendall_tau(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Kendall tau-b (ties in either ranking shrink the denominator, as scipy's default)."""
    return _tau_b(pair_counts(y_true, y_pred))


def pairwise_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of pairs with different true values that the prediction orders correctly."""
    return _pairwise(pair_counts(y_true, y_pred))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    d = np.asarray(y_pred, dtype=np.float64).ravel() - np.asarray(y_true, dtype=np.float64).ravel()
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


def ranking_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """`rmse`, `kendall_tau` and `pairwise_accuracy` from one pass over the pairs."""
    c = pair_counts(y_true, y_pred)
    return {"rmse": rmse(y_true, y_pred), "kendall_tau": _tau_b(c), "pairwise_accuracy": _pairwise(c)}

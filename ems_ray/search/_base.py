"""The ask/tell interface every searcher implements: batches of gene rows out, their scores in.

    search = make_evolution(scorer, budget, EvolutionConfig(), seed=0)   # or RandomSearch, OptunaSearch
    while not search.done:
        rows = search.ask(100)                  # a batch of candidates (n is a hint, see below)
        search.tell(rows, scorer.accuracy(rows))

The same object runs in the local driver (`drive`, one batch at a time) and under Ray Tune
(`BatchSearcher`: one trial per batch), so a search is the same search wherever it runs.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ems_ray.errors import InputError


class BatchSearch(ABC):
    """A searcher over `Genome` rows, driven by ask and tell.

    Lifecycle (the way Optuna's `BaseSampler` documents when each of its methods is called):

    1. `ask(n)` hands out a batch of rows that were never handed out before. `n` is the batch
       size the caller wants; a searcher whose batches are fixed by its algorithm ignores it (the
       evolution hands out its whole generation; NSGA-II its population). An empty batch means
       "nothing now": either the next batch depends on scores still outstanding (the evolution
       waits for its whole generation), or every candidate has been handed out.
    2. `tell(rows, scores)` gives the scores of rows handed out by `ask`, higher is better, one
       per row in the order of `rows`; NaN counts as the worst score (a failed evaluation). A
       batch is told whole, once; batches may be told in another order than asked.
    3. `done` is true once every candidate of the search's budget is told; `best()` is then
       (and after the first tell) the best row told and its score.
    4. `get_state()` / `set_state(state)` carry everything, batches handed out but not yet told
       included, as plain data (numpy arrays, lists, dicts): a restored search continues exactly
       as the uninterrupted one would, given the same scores.
    """

    @abstractmethod
    def ask(self, n: int | None = None) -> np.ndarray:
        """(k, genome width) int16 rows, k <= n unless the algorithm fixes its batch; may be empty."""

    @abstractmethod
    def tell(self, rows: np.ndarray, scores: np.ndarray) -> None:
        """Scores of a batch `ask` handed out."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """Every candidate has been handed out and told."""

    @abstractmethod
    def best(self) -> tuple[np.ndarray, float]:
        """(row, score) of the best candidate told so far."""

    @abstractmethod
    def get_state(self) -> dict: ...

    @abstractmethod
    def set_state(self, state: dict) -> None: ...


def as_scores(scores: np.ndarray, rows: np.ndarray, what: str) -> np.ndarray:
    """Scores as float64 with NaN as -inf, checked to be one per row."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if len(scores) != len(rows):
        raise InputError(f"tell(): {len(scores)} scores for {len(rows)} rows of {what}")
    return np.where(np.isnan(scores), -np.inf, scores)

"""Our searchers as Ray Tune `Searcher`s: one Tune trial scores one batch of a `BatchSearch`.

A trial's config carries its batch: `{"batch": k, "genes": <rows, packed>, "front": [...]}`
(`batch_genes(config)` unpacks the rows; `front` is the within-budget accuracy/cost front of every
batch told before this one was asked, so the trial can report the hypervolume so far). The trial
reports one score per row (`scores`), which the searcher tells its search. The evolution's batch
is one generation, or several run inside the trial (`EvolutionSegment`: the config also carries
the evolution's `state`, and the trial reports the state after them); random search any size;
Optuna (`optuna_searchers.py`) several asks.

`save`/`restore` carry each searcher's whole state, batches in flight included, so
`Tuner.restore` resumes a search exactly; Tune also pickles the searcher object into the Tuner
state, so a searcher holds plain data only.
"""
from __future__ import annotations

import base64
import pickle
import zlib
from typing import TYPE_CHECKING

import numpy as np
from ray.tune.search import Searcher

from ems_ray.artifacts import write_atomic
from ems_ray.errors import InputError
from ems_ray.space import Genome

from .._base import BatchSearch
from .._evolution import Evolution
from .._random import RandomSearch
from .._restricted import target_genome
from .._scoring import fits, gene_names, pareto_front
from ..config import Budget, EvolutionConfig

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable

METRIC, MODE = "accuracy", "max"
SCORES = "scores"  # the result key of a trial's per-row scores, in its batch's row order


def pack_genes(rows: np.ndarray) -> str:
    """Gene rows as a short config string (zlib-compressed little-endian int16, base64): a
    generation of 100 rows of 132 genes is about 3 kB instead of 40 kB of JSON integers, and
    Tune writes every trial's config into its experiment state."""
    rows = np.ascontiguousarray(rows, dtype="<i2")
    header = np.asarray(rows.shape, dtype="<i4").tobytes()
    return base64.b64encode(zlib.compress(header + rows.tobytes(), 6)).decode("ascii")


def batch_genes(config: dict) -> np.ndarray:
    """The (n, width) int16 rows of a trial's config (`pack_genes` reversed)."""
    raw = zlib.decompress(base64.b64decode(config["genes"]))
    shape = tuple(np.frombuffer(raw[:8], dtype="<i4"))
    return np.frombuffer(raw[8:], dtype="<i2").reshape(shape).astype(np.int16)


class BatchSearcher(Searcher):
    """A `BatchSearch` under Tune: `suggest` asks it for a batch (`batch` rows, unless the search
    fixes its own size) and makes it a trial; `on_trial_complete` tells it the trial's `scores`.

    `suggest` returns None while the search waits for outstanding scores (the evolution's
    generation barrier) and FINISHED once it has nothing left to hand out and nothing in flight.
    An errored trial's rows count as the worst. The candidates are the search's, so a search is
    the local driver's search for the same seed, whatever order the trials finish in.
    """

    def __init__(self, search: BatchSearch, table: CostTable, budget: Budget, batch: int | None = None,
                 metric: str = METRIC, mode: str = MODE, genome: Genome | None = None):
        super().__init__(metric=metric, mode=mode)
        self.search, self.table, self.budget, self.batch = search, table, budget, batch
        self.genome = genome or target_genome(table)
        self.names = gene_names(self.genome)
        self.cost = next(iter(budget.limits()))  # the front's (and hypervolume's) cost axis
        self._batches = 0  # batches handed out
        self._live: dict[str, tuple[int, np.ndarray]] = {}  # trial id -> (batch, rows), not yet told
        self._front = np.zeros((0, 2))  # within-budget (accuracy, cost) front of the told batches

    def feasible(self, genes: np.ndarray) -> np.ndarray:
        """Which gene rows the budget admits (a method, not a closure: it pickles with the searcher)."""
        return fits(self.table, self.budget, genes)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        rows = self.search.ask(self.batch)
        if not len(rows):
            return None if self._live else Searcher.FINISHED
        batch, self._batches = self._batches, self._batches + 1
        self._live[trial_id] = (batch, rows)
        return {"batch": batch, "genes": pack_genes(rows), "front": self._front.tolist()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        batch, rows = self._live.pop(trial_id, (None, None))
        if rows is None:
            return
        scores = None if error or not result else result.get(SCORES)
        if scores is None or len(scores) != len(rows):
            scores = np.full(len(rows), -np.inf)
        scores = np.asarray(scores, dtype=np.float64)
        self.search.tell(rows, scores if self._mode == "max" else -scores)
        feasible = self.feasible(rows) & np.isfinite(scores)
        points = np.concatenate([self._front, np.stack([scores[feasible],
                                                        self.table.score(rows[feasible])[self.cost]], axis=1)])
        self._front = points[pareto_front(points[:, 0], points[:, 1])]

    def best(self) -> tuple[np.ndarray, float]:
        return self.search.best()

    def get_state(self) -> dict:
        return {"metric": self._metric, "mode": self._mode, "budget": self.budget.model_dump(),
                "search": self.search.get_state(), "batches": self._batches,
                "live": {k: (b, rows.copy()) for k, (b, rows) in self._live.items()}, "front": self._front.copy()}

    def set_state(self, state: dict) -> None:
        if Budget(**state["budget"]) != self.budget:
            raise InputError(f"searcher state was saved for budget {Budget(**state['budget']).describe()}, "
                             f"not {self.budget.describe()}")
        self._metric, self._mode = state["metric"], state["mode"]
        self.search.set_state(state["search"])
        self._batches, self._front = state["batches"], state["front"].copy()
        self._live = {k: (b, rows.copy()) for k, (b, rows) in state["live"].items()}

    def save(self, checkpoint_path: str) -> None:
        write_atomic(checkpoint_path, pickle.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


def pack_state(state: dict) -> str:
    """A search's state (`BatchSearch.get_state`) as a config string (pickle, zlib, base64)."""
    return base64.b64encode(zlib.compress(pickle.dumps(state), 6)).decode("ascii")


def unpack_state(text: str) -> dict:
    return pickle.loads(zlib.decompress(base64.b64decode(text)))


class EvolutionSegment:
    """Several generations of an evolution run inside one trial.

    The next generation depends on the scores of the one before, so a trial of one generation
    costs Tune's whole round trip (suggest, start the trial, report, complete: tens of
    milliseconds) per 100 candidates. With `generations` > 1 the trial's config carries the
    evolution's state, its first generation already asked; the trial scores it, tells it, asks
    and scores the next ones itself, and reports the state after them, which the searcher takes.
    The candidates and their order are the local driver's: the same `Evolution`, the same seed.
    """

    def __init__(self, genome: Genome, config: EvolutionConfig, table: CostTable, budget: Budget, generations: int):
        self.genome, self.config, self.table, self.budget = genome, config, table, budget
        self.generations = int(generations)

    def feasible(self, genes: np.ndarray) -> np.ndarray:
        return fits(self.table, self.budget, genes)

    def run(self, config: dict, score) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
        """(rows, their scores, the evolution's state after them) of the segment in `config`;
        `score(rows) -> {"accuracy": ..., costs...}` (`CandidateScorer.score`)."""
        evolution = Evolution(self.genome, self.config, self.feasible)
        evolution.set_state(unpack_state(config["state"]))
        rows, scores = [], []
        for _ in range(self.generations):
            genes = evolution.pending if evolution.pending is not None else evolution.ask()
            if not len(genes):
                break
            scores.append(score(genes))
            evolution.tell(genes, scores[-1]["accuracy"])
            rows.append(genes)
        return (np.concatenate(rows), {k: np.concatenate([s[k] for s in scores]) for k in scores[0]},
                evolution.get_state())


class EvolutionSearcher(BatchSearcher):
    """The paper's evolution (`Evolution`), `generations_per_trial` generations per trial (more
    than one: an `EvolutionSegment` in each trial, the `segment` this searcher's trainable needs)."""

    def __init__(self, table: CostTable, budget: Budget, config: EvolutionConfig | None = None, seed: int = 0,
                 metric: str = METRIC, mode: str = MODE, genome: Genome | None = None, generations_per_trial: int = 1):
        genome = genome or target_genome(table)
        super().__init__(None, table, budget, None, metric, mode, genome)
        config = config or EvolutionConfig()
        self.search = Evolution(genome, config, self.feasible, seed)
        if generations_per_trial < 1:
            raise InputError(f"generations_per_trial must be >= 1, got {generations_per_trial}")
        self.segment = (EvolutionSegment(genome, config, table, budget, generations_per_trial)
                        if generations_per_trial > 1 else None)

    @property
    def evolution(self) -> Evolution:
        return self.search

    def suggest(self, trial_id: str) -> dict | str | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict) and self.segment is not None:
            config["state"] = pack_state(self.search.get_state())  # its first generation asked
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self.segment is None or error or not result or "state" not in result:
            return super().on_trial_complete(trial_id, result, error)  # a failed segment: its first generation worst
        if self._live.pop(trial_id, None) is None:
            return
        self.search.set_state(unpack_state(result["state"]))
        self._front = np.asarray(result["front"], dtype=np.float64).reshape(-1, 2)


class RandomSearcher(BatchSearcher):
    """Random search (`RandomSearch`), `batch` candidates per trial, `samples` in all.

    Tune's own `BasicVariantGenerator` samples the param space uniformly and cannot be told the
    budget: under a tight budget most of its candidates would be over budget, scored and thrown
    away. This searcher draws from the evolution's sampler with over-budget rows rejected before
    they are scored, in the local driver's sequence for the same seed.
    """

    def __init__(self, table: CostTable, budget: Budget, samples: int, seed: int = 0, metric: str = METRIC,
                 mode: str = MODE, max_resample_rounds: int = 200, genome: Genome | None = None, batch: int = 1000):
        genome = genome or target_genome(table)
        super().__init__(None, table, budget, batch, metric, mode, genome)
        self.search = RandomSearch(genome, samples, self.feasible, seed, max_resample_rounds=max_resample_rounds)

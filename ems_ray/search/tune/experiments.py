"""Running a search as a Ray Tune experiment: the batch-scoring trainable, the searcher of each
algorithm, new or restored experiments, and the scored candidates read back in order.

One trial = one batch of candidates (`batch // population` of the evolution's generations, run in
the trial as an `EvolutionSegment` when more than one; `batch` random or TPE candidates; one
NSGA-II generation; `DEFAULT_BATCH` when `batch` is None). The trainable scores the batch (predictor + LUT), writes
every candidate as a row of `<experiment>/candidates/batch-<k>.parquet` (`CANDIDATE_COLUMNS` and
the genes), and reports per trial: `accuracy` (the batch's best within the budget), `mean_accuracy`,
`feasible_share`, `best_so_far` and `hypervolume` (of the within-budget accuracy/cost front of
this and every earlier batch, cost on the budget's first limit, reference point (0, limit)),
`candidates`, and `scores` (one per row, for the searcher; TensorBoard shows them as a histogram).
Tune's controller costs tens of milliseconds per trial, so batches of 1,000 reach thousands of
candidates per second, batches of 100 under a thousand (docs/BENCHMARKS.md).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ems_ray.errors import InputError
from ems_ray.space import Genome

from .._local import SearchResult
from .._scoring import CandidateScorer, InfeasibleBudgetError, check_feasible, hypervolume, pareto_front, within
from ..config import ALGORITHMS, Budget, EvolutionConfig
from .optuna_searchers import OPTUNA_ALGORITHMS, optuna_searcher
from .searchers import (METRIC, SCORES, BatchSearcher, EvolutionSearcher, EvolutionSegment, RandomSearcher,
                        batch_genes, pack_state)

if TYPE_CHECKING:
    from ray.tune import ResultGrid

    from ems_ray.hardware import CostTable

CANDIDATE_COLUMNS = ("batch", "row", "accuracy", "latency_ms", "energy_mj", "macs", "bitops", "within_budget")
CANDIDATES_DIR = "candidates"  # in the experiment folder: one Parquet file per batch


def score_batch(config: dict, *, scorer: CandidateScorer, budget: Budget, rows_dir: str,
                segment: EvolutionSegment | None = None) -> dict:
    """Function trainable: score the batch in `config` (predictor + LUT), write its rows, one
    report. A config with an evolution `state` is an `EvolutionSegment`: `segment` runs its
    generations, and the report adds the `state` after them and the `front` so far."""
    extra = {}
    if "state" in config:
        genes, scores, state = segment.run(config, scorer.score)
        extra["state"] = pack_state(state)
    else:
        genes = batch_genes(config)
        scores = scorer.score(genes)
    ok = within(scores, budget)
    columns = {"batch": np.full(len(genes), int(config["batch"]), dtype=np.int64), "row": np.arange(len(genes)),
               **scores, "within_budget": ok}
    table = pa.table({**columns, "genes": _gene_lists(genes)})
    path = Path(rows_dir) / f"batch-{int(config['batch']):06d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    # written whole, then renamed: a killed trial leaves no half file, and its re-run (after a
    # restore) rewrites it; no fsync, which would cost more than the scoring
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)

    cost, limit = next(iter(budget.limits().items()))
    points = np.concatenate([np.asarray(config.get("front") or np.zeros((0, 2)), dtype=np.float64).reshape(-1, 2),
                             np.stack([scores["accuracy"][ok], scores[cost][ok].astype(np.float64)], axis=1)])
    front = points[pareto_front(points[:, 0], points[:, 1])]
    if "state" in extra:
        extra["front"] = front.tolist()
    accuracy = scores["accuracy"]
    return {METRIC: float(accuracy[ok].max()) if ok.any() else math.nan,
            "mean_accuracy": float(accuracy.mean()) if len(accuracy) else math.nan,
            "feasible_share": float(ok.mean()) if len(ok) else math.nan,
            "best_so_far": float(front[:, 0].max()) if len(front) else math.nan,
            "hypervolume": hypervolume(front[:, 0], front[:, 1], limit),
            "candidates": len(genes), SCORES: [float(a) for a in accuracy], "scored_at": time.time(), **extra}


def _gene_lists(genes: np.ndarray) -> pa.ListArray:
    """(n, width) rows as a list<int16> column, built from one flat buffer (not a list per row)."""
    n, width = genes.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32) if n else np.zeros(1, np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(genes, dtype=np.int16).ravel()))


def batches(candidates: int, batch: int) -> int:
    return -(-candidates // batch)


DEFAULT_BATCH = {"evolution": 1000, "random": 1000, "tpe": 100}  # candidates per trial, `batch=None`


def make_searcher(algorithm: str, table: CostTable, budget: Budget, evolution: EvolutionConfig | None = None,
                  num_samples: int = 100, seed: int = 0, batch: int | None = None) -> tuple[BatchSearcher, int]:
    """The Tune searcher of `algorithm` and the number of trials (batches) it runs.

    `batch` is the candidates per trial (None: `DEFAULT_BATCH`, 1,000 for the evolution and
    random search, where Tune's cost per trial would dominate smaller ones, 100 for TPE, whose
    constant liar asks a whole batch before it is told any of it). The evolution scores
    `population + (generations - 1) * children` candidates in generations of its population,
    `batch // population` of them per trial (at least one), random and Optuna `num_samples`, in
    trials of `batch` (NSGA-II: of its population). Random search takes `max_resample_rounds`
    from `evolution`, as the local driver does, and NSGA-II its population."""
    evolution = evolution or EvolutionConfig()
    batch = DEFAULT_BATCH.get(algorithm, evolution.population) if batch is None else int(batch)
    if algorithm == "evolution":
        per_trial = max(1, batch // evolution.population)
        return (EvolutionSearcher(table, budget, evolution, seed, generations_per_trial=per_trial),
                batches(evolution.generations, per_trial))
    if algorithm == "random":
        return (RandomSearcher(table, budget, num_samples, seed, max_resample_rounds=evolution.max_resample_rounds,
                               batch=batch), batches(num_samples, batch))
    if algorithm in OPTUNA_ALGORITHMS:
        size = evolution.population if algorithm == "nsga2" else batch
        return (optuna_searcher(algorithm, table, budget, seed, evolution.population, num_samples, batch),
                batches(num_samples, size))
    raise InputError(f"algorithm: '{algorithm}' not allowed; allowed values: {list(ALGORITHMS)}")


def fit_tune(scorer: CandidateScorer, budget: Budget, algorithm: str = "evolution",
             evolution: EvolutionConfig | None = None, num_samples: int = 100, seed: int = 0,
             storage: str | Path | None = None, name: str = "search", max_concurrent: int = 1,
             callbacks: list | None = None, batch: int | None = None) -> tuple[ResultGrid, bool]:
    """Run the search as a Tune experiment `storage/name` (default storage `~/ray_results`):
    (results, whether any trial ran now).

    An experiment already there is resumed with `Tuner.restore` (its searcher state included), or,
    when every one of its batches has a score, only read back. `callbacks` (e.g. Tune's loggers)
    go to the `RunConfig` of a new experiment; a restored one keeps its own. Needs Ray."""
    from ray import tune

    search_alg, trials = make_searcher(algorithm, scorer.table, budget, evolution, num_samples, seed, batch)
    storage = Path(storage).resolve() if storage else Path.home() / "ray_results"
    path = storage / name
    trainable = tune.with_resources(
        tune.with_parameters(score_batch, scorer=scorer, budget=budget, rows_dir=str(path / CANDIDATES_DIR),
                             segment=getattr(search_alg, "segment", None)),
        {"cpu": 0.01})
    if tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
        done = tuner.get_results()
        if len(done) >= trials and not done.errors and all(r.metrics and SCORES in r.metrics for r in done):
            return done, False
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=trials, reuse_actors=True,
                                        max_concurrent_trials=max_concurrent,
                                        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=callbacks),
        )
    return tuner.fit(), True


def scored_trials(results: ResultGrid, genome: Genome) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(columns, gene rows) of every candidate of the trials that reported, in the order their
    batches were asked (rows in batch order): `CANDIDATE_COLUMNS` as arrays, read from the
    experiment's Parquet rows."""
    told = sorted({int(r.config["batch"]) for r in results if r.error is None and r.metrics
                   and SCORES in r.metrics})
    folder = Path(results.experiment_path) / CANDIDATES_DIR
    tables = [pq.read_table(folder / f"batch-{b:06d}.parquet") for b in told]
    if not tables:
        return {c: np.zeros(0) for c in CANDIDATE_COLUMNS}, np.zeros((0, genome.width), dtype=np.int16)
    table = pa.concat_tables(tables)
    columns = {c: table.column(c).to_numpy() for c in CANDIDATE_COLUMNS}
    genes = pc.list_flatten(table.column("genes")).to_numpy().astype(np.int16).reshape(len(table), genome.width)
    return columns, genes


def run_tune_search(scorer: CandidateScorer, budget: Budget, algorithm: str = "evolution",
                    evolution: EvolutionConfig | None = None, num_samples: int = 100, seed: int = 0,
                    storage: str | Path | None = None, name: str = "search", max_concurrent: int = 1,
                    check: bool = True, batch: int | None = None, callbacks: list | None = None) -> SearchResult:
    """Run (or resume, when `storage/name` holds an unfinished run) a Tune search; needs Ray.

    The best is the most accurate candidate within the budget; `history` the best after each
    candidate."""
    if check:
        check_feasible(scorer.table, budget)
    t0 = time.perf_counter()
    results, _ = fit_tune(scorer, budget, algorithm, evolution, num_samples, seed, storage, name, max_concurrent,
                          callbacks, batch)
    seconds = time.perf_counter() - t0
    columns, genes = scored_trials(results, Genome(scorer.space))
    feasible = columns["within_budget"].astype(bool)
    if not feasible.any():
        raise InfeasibleBudgetError(f"no candidate within budget {budget.describe()} was scored "
                                    f"({len(feasible)} candidates in {len(results)} trials)")
    accuracy = np.where(feasible, columns["accuracy"], -np.inf)
    best = int(np.argmax(accuracy))
    extra = {"tune_path": results.experiment_path, "trials": len(results)}
    if algorithm == "nsga2":
        cost = next(iter(budget.limits()))
        idx = np.flatnonzero(feasible)
        acc, costs = columns["accuracy"][idx], columns[cost][idx]
        extra["pareto_front"] = [[float(acc[j]), float(costs[j])] for j in pareto_front(acc, costs)]
    return SearchResult(algorithm, budget, genes[best], scorer.score_one(genes[best]), len(feasible), seconds,
                        [float(h) for h in np.maximum.accumulate(accuracy)], extra)


def _trial_name(trial) -> str:
    # Tune's default names spell out the config, which holds a whole batch of genes
    return f"batch_{trial.trial_id}"

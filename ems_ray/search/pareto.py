"""Pareto fronts in one run: the non-dominated sub-nets over predicted accuracy and one or two LUT
costs, under optional hard limits, instead of one search per budget.

    objectives = Objectives.parse("accuracy,latency_ms,energy_mj")
    result = run_local_pareto(scorer, objectives, budget=None)          # ParetoEvolution, 50k candidates
    result.best_within(Budget.parse("latency=0.3ms"))                   # the front's answer to one budget
    write_front(result, scorer.space, RunLayout(run_dir).pareto(objectives))

The evolution (`ParetoEvolution`: the paper's evolution with NSGA-II's non-dominated sorting and
crowding as its selection) or Optuna NSGA-II (`OptunaSearch` with a multi-objective study, driven
through Optuna's ask/tell in this process) proposes; every candidate scored within the limits goes
into a `ParetoArchive`, whose non-dominated set is the front. The stage writes
`<run_dir>/pareto/<objectives>[-within-<budget>]/`:

    front.parquet, front.csv   one row per point, by the first cost: point, accuracy, latency_ms,
                               energy_mj, macs, bitops, one column per gene (`gene_names`), and
                               subnet: the point's `SubnetConfig` as one line of JSON (also YAML:
                               saved to a file it is what `ems-ray export --subnet` reads)
    result.json                algorithm, objectives, budget, reference point, hypervolume, points,
                               scored candidates, seconds, seed
    front.png                  the front (three objectives: its three pairwise projections)

each written with its digest (`write_artifact`) and verified when read back (`read_front`).
The hypervolume's reference point is accuracy 0 and, per cost, the budget's limit where one is set,
else the costliest sub-net's cost (`costliest_costs`): fixed by the space and the limits, so fronts
of different algorithms and runs compare.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ems_ray.artifacts import read_verified, write_artifact
from ems_ray.errors import InputError
from ems_ray.space import Genome

from ._evolution import ParetoEvolution
from ._pareto import ParetoArchive, hypervolume_of, objective_matrix
from ._restricted import target_genome
from ._scoring import COST_KEYS, CandidateScorer, check_feasible, costliest_costs, gene_names, within
from .config import ACCURACY, BUDGET_UNITS, PARETO_ALGORITHMS, Budget, EvolutionConfig, Objectives

if TYPE_CHECKING:
    from ems_ray.hardware import CostTable
    from ems_ray.run_context import RunContext
    from ems_ray.space import SearchSpace

    from .config import SearchConfig

logger = logging.getLogger(__name__)

FRONT_PARQUET, FRONT_CSV, RESULT_JSON, FRONT_PNG = "front.parquet", "front.csv", "result.json", "front.png"
SCORE_COLUMNS = (ACCURACY, *COST_KEYS)
RECOVER = "re-run `ems-ray search --pareto ...` into a fresh folder (move the damaged one aside)"
AXIS_LABELS = {ACCURACY: "predicted accuracy", "latency_ms": "latency (ms, BitFusion LUT)",
               "energy_mj": "energy (mJ, BitFusion LUT)", "bitops": "BitOps (G)", "macs": "MACs (M)"}
_SCALE = {score_key: scale for score_key, _, scale in BUDGET_UNITS.values()}


class ParetoFileError(InputError):
    """A front file that is missing, damaged or not a front."""


@dataclass
class ParetoResult:
    """The front one run found: its points (gene rows, predicted accuracy and LUT costs, by the first
    cost), the reference point of its hypervolume, and what it took."""

    algorithm: str
    objectives: Objectives
    budget: Budget | None
    genes: np.ndarray  # (points, genome width)
    scores: dict[str, np.ndarray]  # SCORE_COLUMNS -> (points,)
    reference: dict[str, float]  # objective -> reference value (accuracy 0; costs: limit or costliest)
    scored: int
    seconds: float
    seed: int = 0

    def __len__(self) -> int:
        return len(self.genes)

    @property
    def hypervolume(self) -> float:
        """Volume dominated by the front up to the reference point, in the objectives' units
        (accuracy fraction x ms x mJ ...)."""
        return hypervolume_of(objective_matrix(self.scores, self.objectives.names), self._reference_point())

    @property
    def hypervolume_normalized(self) -> float:
        """The hypervolume with each cost divided by its reference value: the share of the box
        (accuracy 0 to 1) x (0 to each reference cost) that the front dominates."""
        return self.hypervolume / float(np.prod([self.reference[c] for c in self.objectives.costs]))

    def _reference_point(self) -> np.ndarray:
        return np.asarray([-self.reference[ACCURACY], *(self.reference[c] for c in self.objectives.costs)])

    def best_within(self, budget: Budget) -> int | None:
        """Index of the most accurate point within `budget`, None when none is."""
        ok = within(self.scores, budget)
        return int(np.argmax(np.where(ok, self.scores[ACCURACY], -np.inf))) if ok.any() else None

    def to_json(self) -> dict:
        return {"algorithm": self.algorithm, "objectives": list(self.objectives.names),
                "budget": None if self.budget is None else self.budget.describe(),
                "reference_point": self.reference, "hypervolume": self.hypervolume,
                "hypervolume_normalized": self.hypervolume_normalized, "points": len(self),
                "scored": self.scored, "seconds": self.seconds, "seed": self.seed}


def reference_point(table: CostTable, objectives: Objectives, budget: Budget | None) -> dict[str, float]:
    """Accuracy 0; each cost at the budget's limit when bounded, else at the costliest sub-net's cost."""
    limits = budget.limits() if budget is not None else {}
    costliest = costliest_costs(table)
    return {ACCURACY: 0.0, **{c: float(limits.get(c, costliest[c])) for c in objectives.costs}}


def run_local_pareto(scorer: CandidateScorer, objectives: Objectives, budget: Budget | None = None,
                     algorithm: str = "evolution", evolution: EvolutionConfig | None = None, samples: int = 1000,
                     seed: int = 0, check: bool = True) -> ParetoResult:
    """Search the front in this process: `ParetoEvolution` with `evolution` (default: `ParetoConfig`'s),
    or Optuna NSGA-II with `samples` candidates in generations of `evolution.population`. Only
    candidates within `budget` (when given) join the front; `check` rejects an infeasible budget up front."""
    from .config import ParetoConfig

    if budget is not None and check:
        check_feasible(scorer.table, budget)
    evolution = evolution or ParetoConfig().evolution
    genome = target_genome(scorer.table)

    def feasible(genes: np.ndarray) -> np.ndarray:
        return within(scorer.costs(genes), budget) if budget is not None else np.ones(len(genes), dtype=bool)

    def points(genes: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
        return objective_matrix({ACCURACY: accuracy, **scorer.costs(genes)}, objectives.names)

    if algorithm == "evolution":
        search = ParetoEvolution(genome, evolution, feasible, points, seed)
    elif algorithm == "nsga2":
        from .tune.optuna_searchers import OptunaSearch

        search = OptunaSearch("nsga2", scorer.table, budget, samples, seed, evolution.population, objectives.costs)
    else:
        raise InputError(f"search.algorithm: '{algorithm}' cannot search a Pareto front; "
                         f"allowed values: {', '.join(PARETO_ALGORITHMS)}")
    archive = ParetoArchive(genome.width, len(objectives.names))
    t0 = time.perf_counter()
    scored = 0
    while not search.done:
        rows = search.ask()
        accuracy = scorer.accuracy(rows)
        search.tell(rows, accuracy)
        scored += len(rows)
        ok = feasible(rows)  # Optuna proposes over-budget rows too; they are scored, never on the front
        archive.merge(genome.canonical(rows[ok]), rows[ok], points(rows[ok], accuracy[ok]))
    seconds = time.perf_counter() - t0
    genes = archive.rows[archive.order()]
    return ParetoResult(algorithm, objectives, budget, genes, scorer.score(genes) if len(genes) else
                        {k: np.zeros(0) for k in SCORE_COLUMNS}, reference_point(scorer.table, objectives, budget),
                        scored, seconds, seed)


# ----- files ---------------------------------------------------------------------------------------
def front_columns(result: ParetoResult, space: SearchSpace) -> dict[str, list]:
    """The front as columns: point, the scores, one column per gene, and each point's sub-net as JSON."""
    genome = Genome(space)
    columns: dict[str, list] = {"point": list(range(len(result)))}
    columns.update({k: [float(v) for v in result.scores[k]] for k in SCORE_COLUMNS})
    for name, values in zip(gene_names(genome), result.genes.T):
        columns[name] = [int(v) for v in values]
    columns["subnet"] = [json.dumps(genome.to_config(row).model_dump(mode="json"), separators=(",", ":"))
                         for row in result.genes]
    return columns


def write_front(result: ParetoResult, space: SearchSpace, out_dir: str | Path) -> Path:
    """front.parquet, front.csv, result.json and front.png into `out_dir`, each with its digest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    columns = front_columns(result, space)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    write_artifact(out / FRONT_PARQUET, sink.getvalue().to_pybytes())
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows(zip(*(columns[c] for c in columns)))
    write_artifact(out / FRONT_CSV, text.getvalue())
    write_artifact(out / RESULT_JSON, json.dumps(result.to_json(), indent=1, sort_keys=True))
    write_artifact(out / FRONT_PNG, front_png(result.scores, result.objectives, result.budget,
                                              title=f"{result.algorithm}: {len(result)} points, "
                                                    f"{result.scored} scored"))
    return out


@dataclass
class FrontFiles:
    """A front folder read back: result.json's fields and the front's columns."""

    folder: Path
    info: dict
    columns: dict[str, np.ndarray]

    @property
    def objectives(self) -> Objectives:
        return Objectives(tuple(self.info["objectives"]))

    @property
    def budget(self) -> Budget | None:
        return None if self.info["budget"] is None else Budget.parse(self.info["budget"])


def read_front(folder: str | Path) -> FrontFiles:
    """result.json and front.parquet of a front folder, both verified against their digests."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    info = json.loads(read_verified(folder / RESULT_JSON, "Pareto front result", ParetoFileError, RECOVER))
    data = read_verified(folder / FRONT_PARQUET, "Pareto front", ParetoFileError, RECOVER)
    table = pq.read_table(pa.BufferReader(data))
    missing = [c for c in SCORE_COLUMNS if c not in table.column_names]
    if missing:
        raise ParetoFileError(f"{folder / FRONT_PARQUET} is not a Pareto front: no column {', '.join(missing)}")
    return FrontFiles(folder, info, {c: table.column(c).to_numpy() for c in table.column_names})


# ----- plot ----------------------------------------------------------------------------------------
def _axis(key: str, values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64) / (_SCALE.get(key, 1e6 if key == "macs" else 1.0))


def front_png(scores: dict[str, np.ndarray], objectives: Objectives, budget: Budget | None = None,
              measured: list[tuple[str, str, dict[str, np.ndarray]]] = (), title: str = "") -> bytes:
    """The front as PNG bytes: predicted accuracy against each cost (a step line, points by cost),
    and for three objectives also the two costs against each other (coloured by accuracy).
    `measured`: (label, marker, {accuracy, costs...}) series drawn on the accuracy panels (the final
    models' measured test accuracies, in the report). Budget limits are dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = objectives.costs
    panels = [(c, ACCURACY) for c in costs] + ([tuple(costs)] if len(costs) == 2 else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    limits = budget.limits() if budget is not None else {}
    accuracy = np.asarray(scores[ACCURACY], dtype=np.float64)
    for ax, (x_key, y_key) in zip(axes[0], panels):
        x = _axis(x_key, scores[x_key])
        if y_key == ACCURACY:
            # the 2-D front of this projection: the best accuracy at or below each cost
            order = np.argsort(x, kind="stable")
            ax.step(x[order], np.maximum.accumulate(accuracy[order]), where="post", linewidth=1, label="front")
            ax.scatter(x, accuracy, s=8, alpha=0.6, label=f"{len(x)} points")
            for label, marker, series in measured:
                ax.scatter(_axis(x_key, series[x_key]), series[ACCURACY], marker=marker, s=50,
                           edgecolors="black", zorder=3, label=label)
        else:
            sc = ax.scatter(x, _axis(y_key, scores[y_key]), c=accuracy, s=8, cmap="viridis")
            fig.colorbar(sc, ax=ax, label=AXIS_LABELS[ACCURACY])
        for key, axline in ((x_key, ax.axvline), (y_key, ax.axhline)):
            if key in limits:
                axline(_axis(key, np.asarray([limits[key]]))[0], color="grey", linestyle="--", linewidth=1)
        ylabel = "accuracy (front: predicted; markers: measured)" if measured and y_key == ACCURACY else None
        ax.set(xlabel=AXIS_LABELS[x_key], ylabel=ylabel or AXIS_LABELS[y_key])
        ax.grid(alpha=0.3)
        if y_key == ACCURACY:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


# ----- the stage -----------------------------------------------------------------------------------
def run_pareto_stage(run: RunContext, config: SearchConfig, objectives: Objectives | str | list[str] | None = None,
                     budget: Budget | str | None = None, scorer: CandidateScorer | None = None
                     ) -> tuple[ParetoResult, Path]:
    """The front of the run's space over `objectives` (default `search.pareto.objectives`) under the
    hard limits `budget` (default `search.pareto.budget`; None: no limits), written into
    `<run_dir>/pareto/<objectives>[-within-<budget>]/`."""
    from .stage import load_scorer

    sc, pc = config, config.pareto
    objectives = objectives if objectives is not None else pc.objectives
    if objectives is None:
        raise InputError("no objectives: pass --pareto accuracy,latency_ms (two or three of "
                         "accuracy, latency_ms, energy_mj, bitops) or set search.pareto.objectives")
    objectives = objectives if isinstance(objectives, Objectives) else Objectives.parse(objectives)
    if sc.algorithm not in PARETO_ALGORITHMS:
        raise InputError(f"search.algorithm: '{sc.algorithm}' cannot search a Pareto front; "
                         f"allowed values: {', '.join(PARETO_ALGORITHMS)}")
    if sc.mode != "local":
        raise InputError(f"search.mode: '{sc.mode}' is not for Pareto fronts, which run in this process "
                         "(evolution, and Optuna NSGA-II through its ask/tell); allowed values: local")
    budget = budget if budget is not None else pc.budget
    budget = budget if budget is None or isinstance(budget, Budget) else Budget.parse(budget)
    from ems_ray.hardware import run_cost_table

    table = scorer.table if scorer is not None else run_cost_table(run)
    if budget is not None:
        check_feasible(table, budget)
    scorer = scorer or load_scorer(run, sc, table)
    result = run_local_pareto(scorer, objectives, budget, sc.algorithm, pc.evolution, sc.num_samples, run.seed,
                              check=False)
    out = write_front(result, scorer.space, run.layout.pareto(objectives, budget))
    logger.info("[pareto] %s%s: %d points from %d candidates in %.2f s, hypervolume %.4g -> %s",
                objectives.describe(), "" if budget is None else f" within {budget.describe()}", len(result),
                result.scored, result.seconds, result.hypervolume, out)
    return result, out

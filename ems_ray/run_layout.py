"""The run directory, written down once: every path a run reads or writes.

Each stage, the pipeline's stage table, the manifest and the CLI's defaults take their paths from
`RunLayout`, so a file moves in one place:

    <run_dir>/config.yaml                      the run config as the pipeline ran it
    <run_dir>/manifest.json                    what each pipeline stage read, wrote and took
    <run_dir>/lut.parquet                      the BitFusion cost table every stage prices with
    <run_dir>/supernet/supernet.pt             the trained super network
    <run_dir>/supernet/{checkpoints,ray}/      training checkpoints (local mirror, Ray Train's)
    <run_dir>/supernet/{schedule,history}.json training fingerprint and per-epoch history
    <run_dir>/collect/{fp,quant}/              collected Parquet shards and their plan
    <run_dir>/predictor/{fp,quant}.pt          the predictors; metrics.json beside them
    <run_dir>/search/<budget>/                 best.yaml + result.json of `ems-ray search`
    <run_dir>/compare/<budget>/                `ems-ray compare-searchers`
    <run_dir>/pareto/<objectives>[-within-<budget>]/  `ems-ray search --pareto`: the front, its plot
    <run_dir>/export/<stem>-<digest>/          `ems-ray export`: one folder per sub-net (file stem, digest)
    <run_dir>/final/                           final models per budget and method, summary.csv, run.json
    <run_dir>/report/report.md                 the report and its plots

Plain paths only: this module imports nothing of the project, so every package may use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class _Slugged(Protocol):
    def slug(self) -> str: ...


@dataclass(frozen=True)
class RunLayout:
    """The paths of the run directory `root` (see the module docstring for the tree)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, cfg) -> RunLayout:
        """The layout of the `run_dir` of a run config or a `RunContext`."""
        return cls(Path(cfg.run_dir))

    def relative(self, path: Path) -> str:
        """`path` relative to the run directory, as the manifest records it."""
        return Path(path).relative_to(self.root).as_posix()

    # --- the run as a whole
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lut(self) -> Path:
        return self.root / "lut.parquet"

    # --- [1] super network
    @property
    def supernet_dir(self) -> Path:
        return self.root / "supernet"

    @property
    def supernet(self) -> Path:
        return self.supernet_dir / "supernet.pt"

    @property
    def supernet_checkpoints(self) -> Path:
        return self.supernet_dir / "checkpoints"

    @property
    def supernet_ray(self) -> Path:
        return self.supernet_dir / "ray"

    @property
    def supernet_schedule(self) -> Path:
        return self.supernet_dir / "schedule.json"

    @property
    def supernet_history(self) -> Path:
        return self.supernet_dir / "history.json"

    # --- [2] collection
    @property
    def collect_dir(self) -> Path:
        return self.root / "collect"

    def collected(self, kind: str) -> Path:
        """The shard folder of `kind` ('fp' or 'quant')."""
        return self.collect_dir / kind

    # --- [3] predictors
    @property
    def predictor_dir(self) -> Path:
        return self.root / "predictor"

    def predictor(self, kind: str) -> Path:
        """The predictor file of `kind` ('fp' or 'quant')."""
        return self.predictor_dir / f"{kind}.pt"

    @property
    def predictor_metrics(self) -> Path:
        return self.predictor_dir / "metrics.json"

    # --- [4] search, comparison, export
    def search(self, budget: _Slugged) -> Path:
        return self.root / "search" / budget.slug()

    def compare(self, budget: _Slugged) -> Path:
        return self.root / "compare" / budget.slug()

    @property
    def pareto_dir(self) -> Path:
        return self.root / "pareto"

    def pareto(self, objectives: _Slugged, budget: _Slugged | None = None) -> Path:
        """The folder of one front: named by its objectives and, when it has hard limits, by them."""
        return self.pareto_dir / (objectives.slug() + ("" if budget is None else f"-within-{budget.slug()}"))

    def export(self, name: str) -> Path:
        return self.root / "export" / name

    # --- [5] final models and report
    @property
    def final_dir(self) -> Path:
        return self.root / "final"

    @property
    def final_summary(self) -> Path:
        return self.final_dir / "summary.csv"

    @property
    def final_info(self) -> Path:
        return self.final_dir / "run.json"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def report(self) -> Path:
        return self.report_dir / "report.md"

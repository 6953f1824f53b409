"""What the stages of a run share, beside each stage's own config section.

A stage entry point takes a `RunContext` plus its own section of the run config (and, where its
result depends on another section, that section, named as an argument), never the whole
`RunConfig`: `ems_ray/config.py` composes every stage's config, so a stage that took it would
import upwards. `RunConfig.context()` builds the context; the pipeline's stage table and the CLI
pass each stage its sections.

Configs only: this module imports pydantic, the data config and the hardware-target config, never
torch or Ray, so that the run config (which holds a `RayConfig`) loads fast.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from ems_ray.data.config import DataConfig
from ems_ray.hardware.targets import BitFusionTarget, HardwareTarget
from ems_ray.run_layout import RunLayout

if TYPE_CHECKING:
    from ems_ray.space import SearchSpace


class RayConfig(BaseModel):
    """How to reach (or start) Ray. A local session listens on loopback only (ems_ray.ray_session)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="cluster address; None starts a local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray (None: all)")
    num_gpus: int | None = Field(None, ge=0)
    include_dashboard: bool = Field(True, description="Ray Train's state queries need it")
    dashboard_host: str = "127.0.0.1"
    worker_niceness: int = Field(0, ge=0, le=19, description=(
        "niceness of a local Ray's worker processes; Ray's own default, 15, lets its daemons and the "
        "driver take CPU from training and collection workers on a small machine (docs/cluster.md)"))


@dataclass(frozen=True)
class RunContext:
    """The settings every stage reads: where the run lives, its seed, search space, data, Ray, and
    the cost table it prices with and for which hardware target (see `ems_ray.hardware.run_cost_table`)."""

    name: str
    run_dir: Path
    seed: int = 0
    space: str = "fmnist-small"  # preset name or search-space YAML path, as in the run config
    data: DataConfig = field(default_factory=DataConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    lut: str | None = None  # `search.lut`: a cost table to use instead of <run_dir>/lut.parquet
    hardware: HardwareTarget = field(default_factory=BitFusionTarget)  # what the table prices or measures

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    def search_space(self) -> SearchSpace:
        from ems_ray.space import resolve_space

        return resolve_space(self.space)

"""The run config: one YAML file with a section per pipeline stage.

This module composes every stage's config, so it sits above the stage packages: they never import
it. A stage takes its own section plus the shared `RunContext` (`RunConfig.context()`).

`load_run_config` turns pydantic's validation errors into a `ConfigError` that names the file,
each bad field (dotted path) and what is allowed, before any work starts.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ems_ray.collect.config import CollectConfig
from ems_ray.data.config import DataConfig
from ems_ray.dotted import set_dotted
from ems_ray.errors import InputError, validation_problems
from ems_ray.final.config import FinalConfig
from ems_ray.hardware.targets import BitFusionTarget, HardwareTarget
from ems_ray.predictor.config import PredictorConfig
from ems_ray.quant.config import QuantRecipe
from ems_ray.run_context import RayConfig, RunContext
from ems_ray.search.config import Budget, SearchConfig
from ems_ray.space import SearchSpace, resolve_space
from ems_ray.space.yaml_model import read_yaml_file
from ems_ray.train.config import SupernetTrainConfig


class ConfigError(InputError):
    """An invalid or unreadable config file; the message lists every problem."""


class RunConfig(BaseModel):
    """Everything one pipeline run needs; each stage takes its own section and the shared `context()`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    run_dir: Path
    seed: int = 0
    space: str = Field("fmnist-small", description="preset name or path to a search-space YAML")
    data: DataConfig = Field(default_factory=DataConfig)
    supernet: SupernetTrainConfig
    quant: QuantRecipe = Field(default_factory=QuantRecipe)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    predictor: PredictorConfig = Field(default_factory=PredictorConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    final: FinalConfig = Field(default_factory=FinalConfig)
    hardware: HardwareTarget = Field(default_factory=BitFusionTarget,
                                     description="what latency means: kind bitfusion (model) or onnxruntime-cpu (measured)")
    ray: RayConfig = Field(default_factory=RayConfig)

    @field_validator("space")
    @classmethod
    def _space_exists(cls, v: str) -> str:
        try:
            resolve_space(v)  # raises with the allowed preset names
        except FileNotFoundError as exc:
            raise InputError(str(exc)) from None
        return v

    @field_validator("supernet")
    @classmethod
    def _phases_fit_space(cls, v: SupernetTrainConfig, info: ValidationInfo) -> SupernetTrainConfig:
        if "space" in info.data:  # an unknown space is reported on its own
            v.check_space(resolve_space(info.data["space"]))
        return v

    @model_validator(mode="after")
    def _hardware_fits(self) -> RunConfig:
        """The target must run some sub-net of the space, and a measured one has no energy to budget."""
        self.hardware.check_space(self.search_space())
        if self.hardware.measured:
            for text in [*self.final.budgets, *([self.search.budget] if self.search.budget else [])]:
                if "energy_mj" in Budget.parse(text).limits():
                    raise InputError(f"budget '{text}': hardware '{self.hardware.kind}' measures latency only; "
                                     f"budget latency (ms), macs or bitops")
        return self

    def search_space(self) -> SearchSpace:
        return resolve_space(self.space)

    def context(self) -> RunContext:
        """The settings every stage shares (`ems_ray.run_context`), passed beside its own section."""
        return RunContext(name=self.name, run_dir=self.run_dir, seed=self.seed, space=self.space, data=self.data,
                          ray=self.ray, lut=self.search.lut, hardware=self.hardware)


def format_validation_error(err: ValidationError) -> list[str]:
    return validation_problems(err)


def _blamed(line_loc: tuple, origins: dict[str, str]) -> str | None:
    """The option that set the field at `line_loc` (or a field above or below it), if any."""
    loc = [str(p) for p in line_loc]
    for key, origin in origins.items():
        parts = key.split(".")
        if loc and (parts[:len(loc)] == loc or loc[:len(parts)] == parts):
            return origin
    return None


def load_run_config(path: str | Path, overrides: dict | None = None, origins: dict[str, str] | None = None
                    ) -> RunConfig:
    """Read and validate a run config; `overrides` are merged on top (dotted keys allowed).

    `origins` says how the user gave each override (`--set seed=x`, `--generations 0`), so that a
    bad one is blamed on that option, not on the config file."""
    path = Path(path)
    overrides = overrides or {}
    origins = {key: (origins or {}).get(key, f"override {key}") for key in overrides}
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = read_yaml_file(path, "config file") or {}
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    for key, value in overrides.items():
        try:
            set_dotted(data, key, value)
        except InputError as exc:
            raise ConfigError(f"{origins[key]}: {exc}") from None
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        lines = [(_blamed(e["loc"], origins), line) for e, line in zip(err.errors(), validation_problems(err))]
        if all(origin for origin, _ in lines):
            raise ConfigError("; ".join(f"{origin}: {line}" for origin, line in lines)) from None
        raise ConfigError(f"{path}: invalid config:\n  " + "\n  ".join(
            line + (f" (set by {origin})" if origin else "") for origin, line in lines)) from None

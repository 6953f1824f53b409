"""The `collect` section of a run config: how many points, how they are sampled and measured, and
what each Ray actor asks for."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from ems_ray.errors import InputError
from ems_ray.quant.config import QuantRecipe

Kind = Literal["fp", "quant"]
KINDS: tuple[str, ...] = ("fp", "quant")
Backend = Literal["actor_pool", "ray_data"]
BACKENDS: tuple[str, ...] = ("actor_pool", "ray_data")
QuantMode = Literal["auto", "finetune", "direct"]


class ActorResources(BaseModel):
    """What each evaluation actor requests from Ray, and how many actors to run.

    Collection starts once `min_actors` actors are placed and uses up to `max_actors` as the
    cluster (or its autoscaler) makes room. `num_gpus` may be fractional (e.g. 0.25: four actors
    share a GPU); an actor given a GPU that finds no CUDA device runs on its CPU and says so.
    """

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    min_actors: PositiveInt = 1
    max_actors: PositiveInt = 2
    threads: PositiveInt | None = Field(None, description="torch threads per actor (None: max(1, num_cpus))")
    max_restarts: int = Field(3, ge=-1, description=(
        "Ray restarts of a dead actor (-1: unlimited); actor_pool only, Ray Data restarts its actors without limit"))
    startup_timeout_s: float = Field(600.0, gt=0, description="how long to wait for min_actors to be placed")

    @model_validator(mode="after")
    def _bounds(self) -> ActorResources:
        if self.max_actors < self.min_actors:
            raise InputError(f"max_actors ({self.max_actors}) must be >= min_actors ({self.min_actors})")
        return self

    def torch_threads(self) -> int:
        return self.threads or max(1, int(self.num_cpus))


class CollectConfig(BaseModel):
    """Full-precision and quantized data collection (paper sections 3.2 and 4).

    FP points: extract the sub-net, recalibrate batch norm on `bn_batches` training batches,
    evaluate on the first `val_images` validation images. Quantized points: the run's quantization
    recipe (or `quant_recipe`) — calibrate, fine-tune briefly, evaluate; from a quantization-aware
    super network without the fine-tune (`quant_mode`). Quantized points mix two
    schemes: (1) a random architecture with a random policy, (2) a random architecture measured
    under `policies_per_arch` random policies; `scheme2_fraction` of the points come from (2).
    """

    model_config = ConfigDict(extra="forbid")

    fp_points: PositiveInt = 2000
    quant_points: PositiveInt = 400
    policies_per_arch: PositiveInt = 10
    scheme2_fraction: float = Field(0.5, ge=0, le=1)
    bn_batches: PositiveInt = 8
    val_images: PositiveInt | None = Field(2000, description="validation images per point (None: all)")
    quant_recipe: QuantRecipe | None = Field(None, description="None: the run's `quant` section")
    quant_mode: QuantMode = Field("auto", description=(
        "how quantized points are measured: finetune (the recipe's fine-tune steps), direct (no fine-tune: "
        "needs a quantization-aware super network, trained with a `quantize` phase), auto (direct when the "
        "super network is quantization-aware, else finetune)"))
    points_per_shard: PositiveInt = Field(16, description="points per actor task, and per Parquet shard")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when Ray gave the actor a GPU")
    resources: ActorResources = Field(default_factory=ActorResources)
    backend: Backend = Field("ray_data", description=(
        "how collection runs on Ray: ray_data (map_batches over a Ray Data actor pool; the default, see "
        "docs/collection.md) or actor_pool (the driver feeds its own actors); the same rows either way"))
    progress_every_s: float = Field(10.0, ge=0, description="seconds between progress lines")

    def points(self, kind: str) -> int:
        return self.fp_points if kind == "fp" else self.quant_points

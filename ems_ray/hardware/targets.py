"""Hardware targets: what a run's latency means, as one typed config (the `hardware:` section).

    hardware: {kind: bitfusion}                                   # the default: the BitFusion model
    hardware: {kind: onnxruntime-cpu, threads: 1, batch: 1}      # measured in ONNX Runtime

A target says which (weight, activation) precisions it executes. BitFusion runs 2..8 bits; ONNX
Runtime's integer kernels run int8 only, so on that target every searchable bit gene is frozen
at 8 (float layers are not among a space's bit choices, so "int8 or float per layer" reduces to
int8 here). `check_space` refuses a space that offers none of the target's precisions.
"""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from ems_ray.errors import InputError

from .config import BitFusionConfig

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


class TargetError(InputError):
    """A hardware target that cannot serve this run: a space without its precisions, a missing provider."""


class _Target(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    supported_bits: ClassVar[tuple[int, ...]] = ()

    @property
    def frozen_bits(self) -> int | None:
        """The one bit-width every searchable layer must take, when the target executes only one."""
        return self.supported_bits[0] if len(self.supported_bits) == 1 else None

    def precisions(self) -> tuple[tuple[int, int], ...]:
        """The (weight, activation) pairs the target executes."""
        return tuple((w, a) for w in self.supported_bits for a in self.supported_bits)

    def check_space(self, space) -> None:
        """TargetError unless each of the space's bit choices (and its fixed_bits) offers a supported width."""
        allowed = set(self.supported_bits)
        if space.fixed_bits not in allowed:
            raise TargetError(f"hardware '{self.kind}' executes {sorted(allowed)} bits; space '{space.name}' "
                              f"has fixed_bits {space.fixed_bits}")
        for name, choices in zip(("pw_w", "pw_a", "dw_w", "dw_a"), space.bits.as_tuple()):
            if not allowed & set(choices):
                raise TargetError(f"hardware '{self.kind}' executes {sorted(allowed)} bits; space '{space.name}' "
                                  f"offers bits.{name} {list(choices)}: no sub-net of it can run there")


class BitFusionTarget(_Target):
    """The analytical BitFusion model (`BitFusionModel`): latency and energy, 2..8 bits per layer."""

    kind: Literal["bitfusion"] = "bitfusion"
    config: BitFusionConfig = Field(default_factory=BitFusionConfig)
    supported_bits: ClassVar[tuple[int, ...]] = (2, 3, 4, 5, 6, 7, 8)

    @property
    def measured(self) -> bool:
        return False


class OnnxRuntimeTarget(_Target):
    """Latency measured in ONNX Runtime on the machine that builds the table (int8 kernels only)."""

    kind: Literal["onnxruntime-cpu"]
    provider: Literal["cpu", "cuda", "tensorrt"] = Field(
        "cpu", description="execution provider; cuda/tensorrt need an onnxruntime build that has them")
    threads: int = Field(1, ge=1, description="intra-op threads of every timed session")
    batch: int = Field(1, ge=1, description="images per timed run")
    repeats: int = Field(30, ge=3, description="timed runs per model (median and 10th/90th percentile kept)")
    warmup: int = Field(5, ge=0, description="untimed runs before the timed ones")
    statistic: Literal["median", "p10", "min"] = Field(
        "median", description="what a timing keeps: the median, or the 10th percentile / minimum (steadier on a "
                              "machine shared with other jobs)")
    calibration_subnets: int = Field(
        20, ge=4, description="whole sub-nets measured to fit the network constant and per-layer overhead")
    seed: int = Field(0, description="draws the calibration (and validation) sub-nets and the random weights")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Ray resources each measuring task asks for on a cluster, naming the node type the model "
                    "will run on (e.g. {'node_type:cpu-worker': 1}); empty: measure in this process")
    accept_other_host: bool = Field(
        False, description="load the table although this host's CPU or onnxruntime differ from the measuring "
                           "host's (a Ray head that searches for its workers)")
    supported_bits: ClassVar[tuple[int, ...]] = (8,)  # int8 kernels; lower bits would run as 8 anyway

    @property
    def measured(self) -> bool:
        return True

    @property
    def provider_name(self) -> str:
        return PROVIDERS[self.provider]

    def require_provider(self) -> str:
        """The provider's ONNX Runtime name; TargetError naming the installed ones when it is missing."""
        import onnxruntime as ort

        available = ort.get_available_providers()
        if self.provider_name not in available:
            raise TargetError(f"hardware.provider: '{self.provider}' ({self.provider_name}) is not in this "
                              f"onnxruntime {ort.__version__}; available providers: {available}")
        return self.provider_name


HardwareTarget = Annotated[Union[BitFusionTarget, OnnxRuntimeTarget], Field(discriminator="kind")]
TARGET_KINDS = ("bitfusion", "onnxruntime-cpu")


def parse_target(value) -> BitFusionTarget | OnnxRuntimeTarget:
    """A target from a dict, a kind name, or a target (the CLI's `--target`)."""
    from pydantic import TypeAdapter, ValidationError

    from ems_ray.errors import validation_problems

    if isinstance(value, _Target):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    try:
        return TypeAdapter(HardwareTarget).validate_python(value)
    except ValidationError as err:
        raise TargetError("hardware: " + "; ".join(validation_problems(err))) from None

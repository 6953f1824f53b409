"""The search space: one object holds every structural fact (channels, strides, choices).

Everything else (the super network, the encoding, the hardware LUT) derives its shapes from a
`SearchSpace` so the channel lists are written down exactly once.
"""
from __future__ import annotations

from functools import cached_property
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, PositiveInt, field_validator, model_validator

from ems_ray.errors import InputError

from .yaml_model import YamlModel

ALLOWED_KERNELS = (1, 3, 5, 7)
ALLOWED_BITS = tuple(range(2, 9))


class _Frozen(YamlModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StemSpec(_Frozen):
    """The fixed first convolution (image → `out_channels`)."""

    out_channels: PositiveInt
    kernel: Literal[3, 5, 7] = 3
    stride: Literal[1, 2] = 2


class FixedBlockSpec(_Frozen):
    """The fixed first inverted-residual block (expand ratio 1: depthwise then pointwise)."""

    out_channels: PositiveInt
    kernel: Literal[3, 5, 7] = 3
    stride: Literal[1, 2] = 1


class StageSpec(_Frozen):
    """A stage of up to max(depth_choices) blocks; the first block changes channels/stride."""

    out_channels: PositiveInt
    stride: Literal[1, 2]
    depth_choices: list[PositiveInt]

    @field_validator("depth_choices")
    @classmethod
    def _sorted_unique(cls, v: list[int]) -> list[int]:
        if not v:
            raise InputError("depth_choices must not be empty")
        if sorted(set(v)) != v:
            raise InputError(f"depth_choices must be strictly increasing, got {v}")
        return v


def _check_bits(v: list[int], name: str) -> list[int]:
    if not v:
        raise InputError(f"{name} must not be empty")
    bad = [b for b in v if b not in ALLOWED_BITS]
    if bad:
        raise InputError(f"{name}: bit-widths {bad} not supported; allowed values: {list(ALLOWED_BITS)}")
    if sorted(set(v)) != v:
        raise InputError(f"{name} must be strictly increasing, got {v}")
    return v


class BitChoices(_Frozen):
    """Bit-width choices for the weights (W) and input activations (A) of a block's convs."""

    pw_w: list[int] = Field(default_factory=lambda: [4, 6, 8])
    pw_a: list[int] = Field(default_factory=lambda: [4, 6, 8])
    dw_w: list[int] = Field(default_factory=lambda: [4, 6, 8])
    dw_a: list[int] = Field(default_factory=lambda: [4, 6, 8])

    @field_validator("pw_w", "pw_a", "dw_w", "dw_a")
    @classmethod
    def _valid(cls, v: list[int], info) -> list[int]:
        return _check_bits(v, info.field_name)

    def as_tuple(self) -> tuple[list[int], list[int], list[int], list[int]]:
        return (self.pw_w, self.pw_a, self.dw_w, self.dw_a)


class BlockSlot(_Frozen):
    """A searchable block position, with the shapes that follow from the space."""

    index: int
    stage: int
    position: int
    in_channels: int
    out_channels: int
    stride: int
    in_resolution: int
    out_resolution: int
    mid_choices: tuple[int, ...]


def conv_out(resolution: int, stride: int) -> int:
    """Output size of a 'same'-padded odd-kernel convolution."""
    return (resolution + stride - 1) // stride


class SearchSpace(_Frozen):
    """MobileNetV2-style space: fixed stem, fixed first block, searchable stages, fixed head."""

    file_kind: ClassVar[str] = "search-space file"

    name: str
    image_channels: PositiveInt = 3
    input_resolution: PositiveInt
    num_classes: PositiveInt
    stem: StemSpec
    first_block: FixedBlockSpec
    stages: list[StageSpec]
    kernel_choices: list[int] = Field(default_factory=lambda: [3, 5, 7])
    expand_min: float = Field(4.0, gt=0)
    expand_max: float = Field(6.0, gt=0)
    channel_step: PositiveInt = 8
    bits: BitChoices = Field(default_factory=BitChoices)
    head_channels: PositiveInt
    fixed_bits: int = Field(8, description="bits of the stem, first block, head and classifier")

    @field_validator("kernel_choices")
    @classmethod
    def _kernels(cls, v: list[int]) -> list[int]:
        bad = [k for k in v if k not in ALLOWED_KERNELS]
        if bad or not v:
            raise InputError(f"kernel_choices: {bad or v} not allowed; allowed values: {list(ALLOWED_KERNELS)}")
        if sorted(set(v)) != v:
            raise InputError(f"kernel_choices must be strictly increasing, got {v}")
        return v

    @field_validator("fixed_bits")
    @classmethod
    def _fixed_bits(cls, v: int) -> int:
        if v not in ALLOWED_BITS:
            raise InputError(f"fixed_bits: {v} not supported; allowed values: {list(ALLOWED_BITS)}")
        return v

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: list[StageSpec]) -> list[StageSpec]:
        if not v:
            raise InputError("stages must not be empty")
        return v

    @model_validator(mode="after")
    def _ranges(self) -> SearchSpace:
        if self.expand_max < self.expand_min:
            raise InputError(f"expand_max ({self.expand_max}) must be >= expand_min ({self.expand_min})")
        for slot in self.slots:
            if not slot.mid_choices:
                raise InputError(
                    f"slot {slot.index}: no mid-channel choice between {self.expand_min}x and "
                    f"{self.expand_max}x of {slot.in_channels} in steps of {self.channel_step}"
                )
        return self

    # ----- derived structure -------------------------------------------------------------
    def mid_choices(self, in_channels: int) -> tuple[int, ...]:
        """Mid (expanded) channels from expand_min× to expand_max× the input, in channel steps."""
        lo = round(self.expand_min * in_channels)
        hi = round(self.expand_max * in_channels)
        return tuple(range(lo, hi + 1, self.channel_step))

    @cached_property
    def stem_resolution(self) -> int:
        return conv_out(self.input_resolution, self.stem.stride)

    @cached_property
    def first_block_resolution(self) -> int:
        return conv_out(self.stem_resolution, self.first_block.stride)

    @cached_property
    def slots(self) -> tuple[BlockSlot, ...]:
        slots = []
        in_c, res = self.first_block.out_channels, self.first_block_resolution
        for s, stage in enumerate(self.stages):
            for p in range(max(stage.depth_choices)):
                stride = stage.stride if p == 0 else 1
                out_res = conv_out(res, stride)
                slots.append(
                    BlockSlot(
                        index=len(slots), stage=s, position=p, in_channels=in_c,
                        out_channels=stage.out_channels, stride=stride, in_resolution=res,
                        out_resolution=out_res, mid_choices=self.mid_choices(in_c),
                    )
                )
                in_c, res = stage.out_channels, out_res
        return tuple(slots)

    @cached_property
    def stage_slots(self) -> tuple[tuple[int, ...], ...]:
        """Slot indices of each stage, in order."""
        return tuple(tuple(sl.index for sl in self.slots if sl.stage == s) for s in range(len(self.stages)))

    @property
    def last_channels(self) -> int:
        return self.stages[-1].out_channels

    @property
    def final_resolution(self) -> int:
        return self.slots[-1].out_resolution

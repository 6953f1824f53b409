"""Sub-network configs: one point of the joint architecture × pruning × quantization space."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, PositiveInt

from ems_ray.errors import InputError

from .yaml_model import YamlModel

if TYPE_CHECKING:
    from .search_space import SearchSpace


class InvalidSubnetError(InputError):
    """A sub-net config that its search space cannot produce; lists every problem found."""

    def __init__(self, space_name: str, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"invalid sub-net for search space '{space_name}':\n  " + "\n  ".join(problems)
        )


class BlockConfig(BaseModel):
    """Choices of one block slot; ignored when the stage depth leaves the slot inactive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kernel: PositiveInt
    mid_channels: PositiveInt
    pw_w_bits: PositiveInt = 8
    pw_a_bits: PositiveInt = 8
    dw_w_bits: PositiveInt = 8
    dw_a_bits: PositiveInt = 8

    def bits(self) -> tuple[int, int, int, int]:
        return (self.pw_w_bits, self.pw_a_bits, self.dw_w_bits, self.dw_a_bits)


class SubnetConfig(YamlModel):
    """Depth per stage, and kernel / mid channels / four bit-widths for every block slot.

    Every slot carries a `BlockConfig`, active or not, so that mutation and crossover work on a
    fixed-length genome; `SearchSpace.active_slots` tells which ones the network uses.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    file_kind: ClassVar[str] = "sub-net file"

    space: str
    depths: list[PositiveInt]
    blocks: list[BlockConfig]

    def digest(self) -> str:
        """sha256 (12 hex digits) of the config's canonical JSON: names its exports, so two
        different sub-nets never share a folder."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @classmethod
    def from_yaml(cls, source: str | Path, space: SearchSpace | None = None) -> SubnetConfig:
        """Load (YAML file path or text); validated against `space` when given."""
        cfg = super().from_yaml(source)
        if space is not None:
            validate_subnet(space, cfg)
        return cfg


def validate_subnet(space: SearchSpace, cfg: SubnetConfig) -> SubnetConfig:
    """Raise `InvalidSubnetError` naming each bad field and its allowed values."""
    problems: list[str] = []
    if cfg.space != space.name:
        problems.append(f"space: '{cfg.space}' does not match the search space '{space.name}'")
    if len(cfg.depths) != len(space.stages):
        problems.append(f"depths: {len(cfg.depths)} entries, the space has {len(space.stages)} stages")
    else:
        for s, (d, stage) in enumerate(zip(cfg.depths, space.stages)):
            if d not in stage.depth_choices:
                problems.append(f"depths[{s}]: {d} not allowed; allowed values: {stage.depth_choices}")
    if len(cfg.blocks) != len(space.slots):
        problems.append(f"blocks: {len(cfg.blocks)} entries, the space has {len(space.slots)} block slots")
    else:
        allowed_bits = dict(zip(("pw_w_bits", "pw_a_bits", "dw_w_bits", "dw_a_bits"), space.bits.as_tuple()))
        for slot, block in zip(space.slots, cfg.blocks):
            where = f"blocks[{slot.index}]"
            if block.kernel not in space.kernel_choices:
                problems.append(f"{where}.kernel: {block.kernel} not allowed; allowed values: {space.kernel_choices}")
            if block.mid_channels not in slot.mid_choices:
                problems.append(
                    f"{where}.mid_channels: {block.mid_channels} not allowed; allowed values: {list(slot.mid_choices)}"
                )
            for name, allowed in allowed_bits.items():
                value = getattr(block, name)
                if value not in allowed:
                    problems.append(f"{where}.{name}: {value} not allowed; allowed values: {allowed}")
    if problems:
        raise InvalidSubnetError(space.name, problems)
    return cfg

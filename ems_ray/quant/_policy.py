"""The quantization policy of a sub-net, and applying it to an extracted `StaticSubNet`.

Bits per layer follow the hardware model (`ems_ray.hardware.subnet_layers`): in block slot i,
the 1×1 expand and project convs take (pw_w_bits, pw_a_bits) and the depthwise conv
(dw_w_bits, dw_a_bits), "a" being the bits of the layer's *input* activation. The fixed layers
(stem conv, first block's two convs, head 1×1 conv, classifier) take `fixed_bits` for both.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, field_validator

from ems_ray.errors import InputError
from ems_ray.space import SubnetConfig, validate_subnet

from ._modules import QuantConv2d, QuantLinear
from ems_ray.quantizers import MAX_BITS, MIN_BITS

if TYPE_CHECKING:
    from ems_ray.space import SearchSpace
    from ems_ray.supernet import StaticSubNet


class QuantPolicyError(InputError):
    """A policy that does not fit the model it is applied to; names the offending field."""


def _valid_bits(v: int, info) -> int:
    if isinstance(v, bool) or not MIN_BITS <= v <= MAX_BITS:
        raise InputError(f"{info.field_name}: {v} not supported; allowed values: {MIN_BITS}..{MAX_BITS}")
    return v


class BlockBits(BaseModel):
    """Bit-widths of one searchable block: pointwise (expand, project) and depthwise convs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pw_w_bits: int
    pw_a_bits: int
    dw_w_bits: int
    dw_a_bits: int

    _check = field_validator("pw_w_bits", "pw_a_bits", "dw_w_bits", "dw_a_bits")(_valid_bits)


class QuantPolicy(BaseModel):
    """Which layers of a sub-net to quantize, at which bits.

    `blocks` maps a slot index to its block's bits; slots left out stay in float. `fixed_bits`
    quantizes the stem, the first block, the head conv and the classifier (weights and inputs);
    None leaves them in float. `apply_policy` touches exactly the layers named here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    blocks: dict[int, BlockBits] = {}
    fixed_bits: int | None = 8

    @field_validator("fixed_bits")
    @classmethod
    def _fixed(cls, v: int | None, info) -> int | None:
        return None if v is None else _valid_bits(v, info)

    @classmethod
    def from_subnet(cls, config: SubnetConfig, space: SearchSpace) -> QuantPolicy:
        """The policy a sub-net config carries: its active blocks' bits, fixed layers at space.fixed_bits."""
        validate_subnet(space, config)
        blocks = {}
        for slot in space.slots:
            if slot.position < config.depths[slot.stage]:
                b = config.blocks[slot.index]
                blocks[slot.index] = BlockBits(pw_w_bits=b.pw_w_bits, pw_a_bits=b.pw_a_bits,
                                               dw_w_bits=b.dw_w_bits, dw_a_bits=b.dw_a_bits)
        return cls(blocks=blocks, fixed_bits=space.fixed_bits)

    @classmethod
    def uniform(cls, config: SubnetConfig, space: SearchSpace, w_bits: int, a_bits: int,
                fixed_bits: int | None = None) -> QuantPolicy:
        """Every active block at (w_bits, a_bits), e.g. W4A4; fixed layers at `fixed_bits`
        (default space.fixed_bits)."""
        bits = BlockBits(pw_w_bits=w_bits, pw_a_bits=a_bits, dw_w_bits=w_bits, dw_a_bits=a_bits)
        base = cls.from_subnet(config, space)
        return cls(blocks={i: bits for i in base.blocks},
                   fixed_bits=space.fixed_bits if fixed_bits is None else fixed_bits)

    def apply_to_config(self, config: SubnetConfig) -> SubnetConfig:
        """The sub-net config with this policy's block bits (what the hardware LUT prices)."""
        blocks = [
            b.model_copy(update=self.blocks[i].model_dump()) if i in self.blocks else b
            for i, b in enumerate(config.blocks)
        ]
        return config.model_copy(update={"blocks": blocks})

    def layer_bits(self) -> dict[str, tuple[int, int, bool | None]]:
        """(w_bits, a_bits, input_signed) by module name of a `StaticSubNet`, for named layers only.

        input_signed: False where the input comes out of a ReLU6 (or an average of ReLU6 outputs),
        so [0, v] loses nothing; True for a block's expand conv and the head conv, whose input is
        the residual stream (a BN output plus skip, negative as often as not); None for the stem,
        whose input is the normalised image: calibration decides from the data.
        """
        out: dict[str, tuple[int, int, bool | None]] = {}
        fb = self.fixed_bits
        if fb is not None:
            out["stem.conv"] = (fb, fb, None)
            out["first_block.dw"] = (fb, fb, False)
            out["first_block.project"] = (fb, fb, False)
        for i in sorted(self.blocks):
            b = self.blocks[i]
            out[f"blocks.{i}.expand"] = (b.pw_w_bits, b.pw_a_bits, True)
            out[f"blocks.{i}.dw"] = (b.dw_w_bits, b.dw_a_bits, False)
            out[f"blocks.{i}.project"] = (b.pw_w_bits, b.pw_a_bits, False)
        if fb is not None:
            out["head.conv.conv"] = (fb, fb, True)
            out["head.classifier"] = (fb, fb, False)
        return out


def _check_fits(model: nn.Module, policy: QuantPolicy) -> None:
    space = getattr(model, "space", None)
    if space is None or not hasattr(model, "blocks"):
        raise QuantPolicyError(
            f"apply_policy needs a StaticSubNet (from ElasticSuperNet.extract), got {type(model).__name__}"
        )
    n_slots = len(space.slots)
    active = sorted(int(k) for k in model.blocks.keys())
    problems = []
    for i in sorted(policy.blocks):
        if not 0 <= i < n_slots:
            problems.append(f"blocks[{i}]: slot {i} does not exist in search space '{space.name}' "
                            f"(slots 0..{n_slots - 1})")
        elif i not in active:
            problems.append(f"blocks[{i}]: slot {i} is not in this sub-net; its slots are {active}")
    if problems:
        raise QuantPolicyError("policy does not fit the sub-net:\n  " + "\n  ".join(problems))


def apply_policy(model: StaticSubNet, policy: QuantPolicy, weight_method: str = "kl") -> nn.Module:
    """A copy of `model` with each layer the policy names replaced by its fake-quant version.

    Weight ranges are chosen at once (KL criterion); input ranges need `calibrate`. The original
    model is left untouched; the copy records the policy as `quant_policy`.
    """
    if not isinstance(policy, QuantPolicy):
        raise TypeError(f"policy: expected a QuantPolicy, got {type(policy).__name__}")
    _check_fits(model, policy)
    qmodel = copy.deepcopy(model)
    for name, (w_bits, a_bits, signed) in policy.layer_bits().items():
        parent_name, _, attr = name.rpartition(".")
        parent = qmodel.get_submodule(parent_name)
        layer = getattr(parent, attr)
        if isinstance(layer, nn.Conv2d):
            q = QuantConv2d.from_float(layer, w_bits, a_bits, signed)
        elif isinstance(layer, nn.Linear):
            q = QuantLinear.from_float(layer, w_bits, a_bits, signed)
        else:
            raise QuantPolicyError(f"{name}: expected a Conv2d or Linear, found {type(layer).__name__}")
        q.calibrate_weight(weight_method)
        setattr(parent, attr, q)
    qmodel.quant_policy = policy
    return qmodel

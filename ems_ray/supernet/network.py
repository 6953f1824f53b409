"""The elastic super network over a `SearchSpace`, and the static sub-nets extracted from it.

Fixed stem and first block, one elastic inverted-residual block per slot of the space, fixed
head. `set_active` picks a sub-net (depth per stage, kernel and mid channels per block);
`extract` copies it out as a plain network that computes the same function.
"""
from __future__ import annotations

import copy
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ems_ray.errors import InputError
from ems_ray.space import Genome, SearchSpace, SubnetConfig, resolve_space, validate_subnet
from ems_ray.space.genome import DW_A, DW_W, KERNEL, MID, PW_A, PW_W

from .layers import ClassifierHead, ConvBNAct, ElasticDepthwiseConv, ElasticMBBlock, FirstBlock, MBBlock

ELASTIC_DIMENSIONS = ("kernel", "depth", "mid")


def uses_channels_last(t: torch.Tensor) -> bool:
    """Whether a 4-D tensor carries channels_last strides (also when its shape makes both fit)."""
    canonical = torch.empty(t.shape, device="meta", memory_format=torch.channels_last).stride()
    return t.dim() == 4 and t.stride() == canonical and canonical != torch.empty(t.shape, device="meta").stride()


class StaticSubNet(nn.Module):
    """A sub-net as a plain network (standard Conv2d/BatchNorm2d, depthwise via `groups`).

    `blocks` is keyed by slot index, so module names read `blocks.<slot>.expand|dw|project`;
    each block's `config` holds its `BlockConfig` (bits included) for a quantizer to apply.
    """

    def __init__(self, space: SearchSpace, config: SubnetConfig, stem: nn.Module, first_block: nn.Module,
                 blocks: dict[int, MBBlock], head: nn.Module):
        super().__init__()
        self.space, self.config = space, config
        self.stem, self.first_block = stem, first_block
        self.blocks = nn.ModuleDict({str(i): b for i, b in blocks.items()})
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for block in self.blocks.values():
            x = block(x)
        return self.head(x)


class ElasticSuperNet(nn.Module):
    """Once-for-all style super network; the active sub-net is what `forward` runs."""

    def __init__(self, space: SearchSpace | str | Path, dropout: float = 0.1):
        super().__init__()
        space = resolve_space(space)
        self.space = space
        self.genome = Genome(space)
        self.stem = ConvBNAct(space.image_channels, space.stem.out_channels, space.stem.kernel, space.stem.stride)
        fb = space.first_block
        self.first_block = FirstBlock(space.stem.out_channels, fb.out_channels, fb.kernel, fb.stride)
        self.blocks = nn.ModuleList(
            ElasticMBBlock(sl.in_channels, sl.out_channels, max(sl.mid_choices), space.kernel_choices, sl.stride)
            for sl in space.slots
        )
        self.head = ClassifierHead(space.last_channels, space.head_channels, space.num_classes, dropout)
        self._kernel_cols = self.genome.slot_columns(KERNEL)
        self._mid_cols = self.genome.slot_columns(MID)
        self._bit_cols = [self.genome.slot_columns(g) for g in (PW_W, PW_A, DW_W, DW_A)]
        self.active_quantized = False
        self.set_active(self.genome.largest()[0])

    # ----- choosing the sub-net ---------------------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        """Parameter names that weight decay must not pull towards zero: the kernel-transform
        matrices, initialised to identity (decay would shrink the small kernels towards nothing)."""
        return {f"{name}.transforms.{key}" for name, module in self.named_modules()
                if isinstance(module, ElasticDepthwiseConv) for key in module.transforms}

    def set_active(self, subnet: SubnetConfig | np.ndarray, quantized: bool = False) -> None:
        """Activate a sub-net given as a `SubnetConfig` or a `Genome` gene row.

        Its bits are used only with `quantized`: the searchable blocks' convs then run
        fake-quantized at them (the `quant` training phase); the fixed layers stay in float.
        """
        if isinstance(subnet, SubnetConfig):
            row = self.genome.from_config(subnet)  # validates, naming bad fields
        else:
            row = np.asarray(subnet).reshape(-1)
            if row.shape[0] != self.genome.width:
                raise InputError(f"gene row has {row.shape[0]} entries, the space needs {self.genome.width}")
            if (row < 0).any() or (row >= self.genome.choice_counts).any():
                bad = np.flatnonzero((row < 0) | (row >= self.genome.choice_counts)).tolist()
                raise InputError(f"gene row: columns {bad} out of range of their choice counts")
        row = row.astype(np.int16)
        self._active_genes = row
        self.active_depths = [int(d) for d in self.genome.depths(row)[0]]
        self.active_quantized = bool(quantized)
        kernels = self.space.kernel_choices
        bit_choices = self.space.bits.as_tuple()
        for slot, block in zip(self.space.slots, self.blocks):
            i = slot.index
            bits = (tuple(int(choices[row[cols[i]]]) for choices, cols in zip(bit_choices, self._bit_cols))
                    if quantized else None)
            block.set_active(kernels[row[self._kernel_cols[i]]], slot.mid_choices[row[self._mid_cols[i]]], bits)

    def sample_active(self, rng: np.random.Generator, elastic: Collection[str] = ELASTIC_DIMENSIONS) -> np.ndarray:
        """Activate a random sub-net and return its gene row.

        Dimensions not in `elastic` (any of "kernel", "depth", "mid") stay at their maximum,
        which is what the progressive-shrinking phases need.
        """
        unknown = set(elastic) - set(ELASTIC_DIMENSIONS)
        if unknown:
            raise InputError(f"elastic: {sorted(unknown)} not allowed; allowed values: {list(ELASTIC_DIMENSIONS)}")
        row = self.genome.sample(rng, 1)[0]
        largest = self.genome.largest()[0]
        fixed = {"depth": np.arange(self.genome.n_stages), "kernel": self._kernel_cols, "mid": self._mid_cols}
        for dim, cols in fixed.items():
            if dim not in elastic:
                row[cols] = largest[cols]
        self.set_active(row)
        return row

    @property
    def active_genes(self) -> np.ndarray:
        return self._active_genes.copy()

    def active_config(self) -> SubnetConfig:
        return self.genome.to_config(self._active_genes)

    def active_slots(self) -> list[int]:
        """Slot indices the active sub-net runs, in order."""
        return [i for s, slots in enumerate(self.space.stage_slots) for i in slots[: self.active_depths[s]]]

    # ----- running ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for i in self.active_slots():
            x = self.blocks[i](x)
        return self.head(x)

    @torch.no_grad()
    def sort_channels(self) -> list[torch.Tensor]:
        """Sort every block's mid channels by importance (see `ElasticMBBlock.sort_channels`).

        Leaves the full net's function unchanged. Optimizer state keyed to these weights (e.g.
        momentum) is not permuted: sort before creating the optimizer of a phase.
        """
        return [block.sort_channels() for block in self.blocks]

    @torch.no_grad()
    def extract(self, subnet: SubnetConfig | np.ndarray | None = None) -> StaticSubNet:
        """The sub-net (the active one by default) as a `StaticSubNet` with copied weights.

        Its eval outputs equal the super network's for the same sub-net; it keeps the super
        network's device, and channels_last when the super network uses it.
        """
        if subnet is None:
            config = self.active_config()
        elif isinstance(subnet, SubnetConfig):
            config = validate_subnet(self.space, subnet)
        else:
            config = self.genome.to_config(np.asarray(subnet).reshape(-1))
        depths = config.depths
        blocks = {}
        for s, slots in enumerate(self.space.stage_slots):
            for i in slots[: depths[s]]:
                bc = config.blocks[i]
                blocks[i] = self.blocks[i].to_static(bc.kernel, bc.mid_channels, slot_index=i, config=bc)
        net = StaticSubNet(self.space, config, copy.deepcopy(self.stem), copy.deepcopy(self.first_block),
                           blocks, copy.deepcopy(self.head))
        if uses_channels_last(self.stem.conv.weight):
            net = net.to(memory_format=torch.channels_last)
        return net.train(self.training)

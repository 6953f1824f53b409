"""Sub-nets as integer arrays of choice indices, for fast batched sampling and evolution.

Row layout: one depth index per stage, then per block slot six indices
(kernel, mid channels, pw-W, pw-A, dw-W, dw-A). Every index is < its column's choice count, so
any array produced here is a valid sub-net by construction.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from ems_ray.errors import InputError

from .search_space import SearchSpace
from .subnet import BlockConfig, SubnetConfig, validate_subnet

GENES_PER_SLOT = 6
KERNEL, MID, PW_W, PW_A, DW_W, DW_A = range(GENES_PER_SLOT)


class Genome:
    """Maps `SubnetConfig`s to and from int16 gene arrays and samples/mutates/crosses them."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.n_stages = len(space.stages)
        self.n_slots = len(space.slots)
        self.width = self.n_stages + GENES_PER_SLOT * self.n_slots

    # ----- column facts ----------------------------------------------------------------------
    @cached_property
    def choice_counts(self) -> np.ndarray:
        """Number of choices of every gene column."""
        counts = [len(st.depth_choices) for st in self.space.stages]
        bits = [len(b) for b in self.space.bits.as_tuple()]
        for slot in self.space.slots:
            counts += [len(self.space.kernel_choices), len(slot.mid_choices), *bits]
        return np.asarray(counts, dtype=np.int16)

    def slot_columns(self, gene: int) -> np.ndarray:
        """Column index of one per-slot gene (KERNEL, MID, ...) for every slot."""
        return self.n_stages + GENES_PER_SLOT * np.arange(self.n_slots) + gene

    @cached_property
    def _slot_stage(self) -> np.ndarray:
        return np.asarray([sl.stage for sl in self.space.slots])

    @cached_property
    def _slot_position(self) -> np.ndarray:
        return np.asarray([sl.position for sl in self.space.slots])

    @cached_property
    def _depth_table(self) -> np.ndarray:
        """(n_stages, most depth choices): depth of choice j of stage s (padded with 0)."""
        table = np.zeros((self.n_stages, max(len(st.depth_choices) for st in self.space.stages)), dtype=np.int64)
        for s, st in enumerate(self.space.stages):
            table[s, : len(st.depth_choices)] = st.depth_choices
        return table

    @cached_property
    def _active_from(self) -> np.ndarray:
        """(n_slots,) the smallest depth index of its stage that uses each slot (depth choices are
        strictly increasing, so a slot is active from that index on)."""
        return np.asarray([np.searchsorted(self.space.stages[sl.stage].depth_choices, sl.position, side="right")
                           for sl in self.space.slots], dtype=np.int64)

    def depths(self, genes: np.ndarray) -> np.ndarray:
        """(n, n_stages) active depth of every stage."""
        genes = np.atleast_2d(genes)
        return self._depth_table[np.arange(self.n_stages), genes[:, : self.n_stages]]

    def active(self, genes: np.ndarray) -> np.ndarray:
        """(n, n_slots) bool: which block slots the sub-net uses (the first d of each stage): one
        column gather and a compare, as every candidate of a search passes through here."""
        genes = np.atleast_2d(genes)
        return genes[:, self._slot_stage] >= self._active_from

    def canonical(self, genes: np.ndarray) -> np.ndarray:
        """Zero the genes of inactive slots, so equal networks have equal rows."""
        genes = np.atleast_2d(genes)
        out = genes.copy()
        keep = np.repeat(self.active(genes), GENES_PER_SLOT, axis=1)  # slot-major columns
        out[:, self.n_stages:] *= keep.astype(genes.dtype)  # arithmetic: 2x faster than np.where here
        return out

    # ----- sampling and evolution ------------------------------------------------------------
    def sample(self, rng: np.random.Generator, n: int, fixed_bits: int | None = None) -> np.ndarray:
        """n uniformly random sub-nets; `fixed_bits` pins every bit-width (e.g. FP sampling at 8)."""
        genes = (rng.random((n, self.width)) * self.choice_counts).astype(np.int16)
        return self.with_bits(genes, fixed_bits) if fixed_bits is not None else genes

    def sample_spread(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n random rows spread over sizes (initial populations, random search): half uniform, half
        with each gene set to its smallest choice (fewest blocks, smallest kernel and width, fewest
        bits) with a per-row probability drawn from U(0, 1). Under a tight budget almost no uniform
        row fits (0.2% of `apq-imagenet` rows are under 8.5 ms); the shrunk half spans the sizes
        between. A method of the genome so that a restricted genome can restrict it too."""
        rows = self.sample(rng, n)
        shrink = rng.random((n, 1)) * (np.arange(n) % 2 == 1)[:, None]
        return np.where(rng.random(rows.shape) < shrink, 0, rows).astype(np.int16)

    def slot_variants(self, row: np.ndarray, slot: int, columns: np.ndarray | None = None) -> np.ndarray:
        """Copies of the one row `row`, one per combination of choices of slot `slot`'s genes (only
        those among `columns`, when given): the exhaustive per-block search behind the cheapest
        sub-net of a space (costs are sums of per-block terms, so blocks can be minimised one by one)."""
        cols = self.n_stages + GENES_PER_SLOT * slot + np.arange(GENES_PER_SLOT)
        if columns is not None:
            cols = np.intersect1d(cols, columns)
        row = np.atleast_2d(row)
        if not len(cols):
            return row.copy()
        combos = np.indices(self.choice_counts[cols]).reshape(len(cols), -1).T
        rows = np.repeat(row, len(combos), axis=0)
        rows[:, cols] = combos
        return rows

    def with_bits(self, genes: np.ndarray, bits: int) -> np.ndarray:
        """Copy with every bit-width set to `bits` (must be a choice of each bit field)."""
        genes = np.array(np.atleast_2d(genes), copy=True)
        for g, choices in zip((PW_W, PW_A, DW_W, DW_A), self.space.bits.as_tuple()):
            if bits not in choices:
                raise InputError(f"bits: {bits} not allowed; allowed values: {choices}")
            genes[:, self.slot_columns(g)] = choices.index(bits)
        return genes

    def mutate(self, genes: np.ndarray, rng: np.random.Generator, prob: float = 0.1) -> np.ndarray:
        """Resample each choice (each stage depth, each block's kernel/width/bits) with `prob`."""
        genes = np.atleast_2d(genes).astype(np.int16)
        fresh = self.sample(rng, len(genes))
        return genes + (fresh - genes) * (rng.random(genes.shape) < prob).astype(np.int16)

    def crossover(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each choice taken from parent a or b with equal probability: one random bit per gene
        (`rng.bytes`, not a float each) and integer arithmetic, since a converged population's
        search proposes some hundred thousand crossovers to find a few novel ones."""
        a, b = np.atleast_2d(a).astype(np.int16), np.atleast_2d(b).astype(np.int16)
        n, width = np.broadcast_shapes(a.shape, b.shape)
        nbytes = -(-width // 8)
        bits = np.frombuffer(rng.bytes(n * nbytes), dtype=np.uint8).reshape(n, nbytes)
        take_a = -np.unpackbits(bits, axis=1, count=width).astype(np.int16)  # 0 or all ones
        return b ^ ((a ^ b) & take_a)

    def largest(self, bits: int | None = None) -> np.ndarray:
        """The sub-net with every choice at its maximum (bits at max unless given)."""
        genes = (self.choice_counts - 1).astype(np.int16)[None, :]
        return self.with_bits(genes, bits) if bits is not None else genes

    def smallest(self, bits: int | None = None) -> np.ndarray:
        genes = np.zeros((1, self.width), dtype=np.int16)
        return self.with_bits(genes, bits) if bits is not None else genes

    # ----- conversion --------------------------------------------------------------------------
    def to_config(self, row: np.ndarray) -> SubnetConfig:
        sp = self.space
        row = np.asarray(row).ravel()
        bit_choices = sp.bits.as_tuple()
        blocks = []
        for slot in sp.slots:
            g = row[self.n_stages + GENES_PER_SLOT * slot.index:][:GENES_PER_SLOT]
            blocks.append(
                BlockConfig(
                    kernel=sp.kernel_choices[g[KERNEL]],
                    mid_channels=slot.mid_choices[g[MID]],
                    pw_w_bits=bit_choices[0][g[PW_W]],
                    pw_a_bits=bit_choices[1][g[PW_A]],
                    dw_w_bits=bit_choices[2][g[DW_W]],
                    dw_a_bits=bit_choices[3][g[DW_A]],
                )
            )
        depths = [st.depth_choices[row[s]] for s, st in enumerate(sp.stages)]
        return SubnetConfig(space=sp.name, depths=depths, blocks=blocks)

    def to_configs(self, genes: np.ndarray) -> list[SubnetConfig]:
        return [self.to_config(row) for row in np.atleast_2d(genes)]

    def from_config(self, cfg: SubnetConfig) -> np.ndarray:
        """Gene row of a config; validates it first, so bad configs fail with field names."""
        sp = self.space
        validate_subnet(sp, cfg)
        row = [st.depth_choices.index(d) for st, d in zip(sp.stages, cfg.depths)]
        bit_choices = sp.bits.as_tuple()
        for slot, block in zip(sp.slots, cfg.blocks):
            row += [sp.kernel_choices.index(block.kernel), slot.mid_choices.index(block.mid_channels)]
            row += [choices.index(b) for choices, b in zip(bit_choices, block.bits())]
        return np.asarray(row, dtype=np.int16)

    def from_configs(self, configs: list[SubnetConfig]) -> np.ndarray:
        return np.stack([self.from_config(c) for c in configs]) if configs else np.zeros((0, self.width), np.int16)

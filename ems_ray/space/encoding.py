"""The predictor's one-hot encoding of a sub-net (paper section 3.2).

Layout: the full-precision (FP) part of every block slot first — one-hot kernel, then one-hot mid
channels — then the quantization part of every slot — one-hot pw-W, pw-A, dw-W, dw-A bits.
An inactive (skipped) slot is all zeros in both parts, which is how depth is encoded. Keeping
the FP part first lets the quantization-aware predictor reuse the FP predictor's input layer and
add one input head for the quant part (predictor transfer).
"""
from __future__ import annotations

import numpy as np

from ems_ray.errors import InputError

from .genome import DW_A, DW_W, GENES_PER_SLOT, KERNEL, MID, PW_A, PW_W, Genome
from .search_space import SearchSpace

ENCODING_VERSION = "onehot-v1"
FP_GENES = (KERNEL, MID)
QUANT_GENES = (PW_W, PW_A, DW_W, DW_A)


class Encoding:
    """Vectorised encode/decode between gene arrays (see `Genome`) and float32 feature rows."""

    version = ENCODING_VERSION

    def __init__(self, space: SearchSpace):
        self.space = space
        self.genome = Genome(space)
        counts = self.genome.choice_counts
        g = self.genome
        # (slot, gene) -> (offset of its one-hot segment, its length); FP segments first.
        self._offset = np.zeros((g.n_slots, GENES_PER_SLOT), dtype=np.int64)
        self._length = np.zeros((g.n_slots, GENES_PER_SLOT), dtype=np.int64)
        pos = 0
        for part in (FP_GENES, QUANT_GENES):
            for s in range(g.n_slots):
                for gene in part:
                    n = int(counts[g.n_stages + GENES_PER_SLOT * s + gene])
                    self._offset[s, gene], self._length[s, gene] = pos, n
                    pos += n
                if part is FP_GENES and s == g.n_slots - 1:
                    self.fp_dim = pos
        self.dim = pos
        self.quant_dim = self.dim - self.fp_dim

    def encode(self, genes: np.ndarray, fp_only: bool = False) -> np.ndarray:
        """(n, dim) float32 encoding, or (n, fp_dim) with `fp_only`."""
        genes = np.atleast_2d(genes)
        g = self.genome
        n = len(genes)
        active = g.active(genes).astype(np.float32)  # (n, slots)
        cols = g.n_stages + GENES_PER_SLOT * np.arange(g.n_slots)[:, None] + np.arange(GENES_PER_SLOT)
        positions = self._offset[None] + genes[:, cols]  # (n, slots, 6)
        out = np.zeros((n, self.dim), dtype=np.float32)
        rows = np.broadcast_to(np.arange(n)[:, None, None], positions.shape)
        out[rows, positions] = np.broadcast_to(active[:, :, None], positions.shape)
        return out[:, : self.fp_dim] if fp_only else out

    def active_indices(self, genes: np.ndarray, fp_only: bool = False) -> np.ndarray:
        """(n, k) int64 positions of the ones of `encode(genes, fp_only)`, k = 6 (2 with `fp_only`)
        per slot; a skipped slot's positions are the row width (`dim`, or `fp_dim`), one past the
        last feature. A one-hot row's product with a matrix is the sum of the rows these select,
        so a predictor's first layer can gather instead of multiplying (`MLPPredictor.forward_active`)."""
        genes = np.atleast_2d(genes)
        g = self.genome
        if genes.ndim != 2 or genes.shape[1] != g.width:
            raise InputError(f"gene rows have shape {genes.shape}; '{self.space.name}' needs (n, {g.width})")
        parts = list(FP_GENES) if fp_only else list(range(GENES_PER_SLOT))
        slot_genes = genes[:, g.n_stages:].reshape(len(genes), g.n_slots, GENES_PER_SLOT)[:, :, parts]
        positions = self._offset[None, :, parts] + slot_genes
        pad = self.fp_dim if fp_only else self.dim
        return np.where(g.active(genes)[:, :, None], positions, pad).reshape(len(genes), g.n_slots * len(parts))

    def decode(self, x: np.ndarray) -> np.ndarray:
        """Canonical genes of an encoding (inactive slots 0). An FP-only row decodes with every
        bit-width at its largest choice. Raises ValueError on rows that are not valid encodings."""
        x = np.atleast_2d(np.asarray(x))
        if x.shape[1] not in (self.dim, self.fp_dim):
            raise InputError(
                f"encoding has {x.shape[1]} features; '{self.space.name}' ({self.version}) expects "
                f"{self.dim} (full) or {self.fp_dim} (FP part only)"
            )
        g = self.genome
        genes = np.zeros((len(x), g.width), dtype=np.int16)
        present = np.zeros((len(x), g.n_slots, GENES_PER_SLOT), dtype=bool)
        fp_only = x.shape[1] == self.fp_dim
        for s in range(g.n_slots):
            for gene in range(GENES_PER_SLOT):
                col = g.n_stages + GENES_PER_SLOT * s + gene
                if fp_only and gene in QUANT_GENES:
                    genes[:, col] = g.choice_counts[col] - 1
                    continue
                seg = x[:, self._offset[s, gene]: self._offset[s, gene] + self._length[s, gene]]
                ones = seg.sum(axis=1)
                if not np.all(np.isin(seg, (0, 1))) or np.any(ones > 1):
                    raise InputError(f"slot {s}: segment {gene} is not one-hot")
                present[:, s, gene] = ones == 1
                genes[:, col] = np.where(ones == 1, seg.argmax(axis=1), 0)
        parts = FP_GENES if fp_only else tuple(range(GENES_PER_SLOT))
        active = present[:, :, parts[0]]
        if np.any(present[:, :, list(parts)] != active[:, :, None]):
            raise InputError("a slot is partly encoded: all its segments must be set, or none")
        for s, slot_ids in enumerate(self.space.stage_slots):
            depth = active[:, slot_ids].sum(axis=1)
            prefix = np.arange(len(slot_ids))[None, :] < depth[:, None]
            choices = self.space.stages[s].depth_choices
            if np.any(active[:, slot_ids] != prefix) or not np.all(np.isin(depth, choices)):
                raise InputError(f"stage {s}: active blocks must be a prefix with depth in {choices}")
            genes[:, s] = np.searchsorted(choices, depth)
        return genes

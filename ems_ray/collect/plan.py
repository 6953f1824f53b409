"""Sampling plans: which sub-nets (and policies) to measure, as a pure function of the seed.

Point `i` of a plan depends only on (seed, kind, scheme settings, i), never on how many points
are asked for, so a plan can be extended later (collection resumes) and every worker, run or
machine derives the same rows for the same sample ids.

- FP plan: one random architecture per point, every bit-width pinned at 8 (the float
  super network ignores bits; pinning keeps the gene rows canonical).
- Quantized plan: a sequence of groups. A scheme-1 group is one point (random architecture,
  random policy); a scheme-2 group is one random architecture under `policies_per_arch` random
  policies (consecutive sample ids). Each next group is scheme 2 while scheme 2 holds less than
  `scheme2_fraction` of the points so far, so every prefix of the plan has (nearly) that mix.
- `fixed_bits` (a hardware target that executes one precision, e.g. ONNX Runtime's int8): every
  quantized point is a random architecture at those bits (scheme 1; scheme 2 would repeat one net).

Gene rows are canonical (`Genome.canonical`: genes of inactive slots are zero); `arch_id`
identifies the architecture without its bits, so FP and quantized rows of one architecture, and
the points of one scheme-2 group, share it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ems_ray.errors import InputError
from ems_ray.space import Genome, SearchSpace
from ems_ray.space.genome import DW_A, DW_W, PW_A, PW_W

PLAN_VERSION = 1
FP_BITS = 8
_KIND_CODES = {"fp": 1, "quant": 2}
_SEED_STREAM = 1 << 20  # separates the per-point evaluation seeds from the group sampling streams


@dataclass(frozen=True)
class PlannedSamples:
    """Columns of the first n points of a plan (or a subset of them)."""

    sample_id: np.ndarray  # int64
    scheme: np.ndarray  # int8: 0 FP, 1 or 2 quantized
    arch_id: np.ndarray  # str
    genes: np.ndarray  # int16 (n, genome width)
    seed: np.ndarray  # int64: the seed the point's evaluation uses

    def __len__(self) -> int:
        return len(self.sample_id)

    def select(self, mask_or_index: np.ndarray) -> PlannedSamples:
        return PlannedSamples(*(getattr(self, f)[mask_or_index] for f in _FIELDS))


_FIELDS = ("sample_id", "scheme", "arch_id", "genes", "seed")


class SamplingPlan:
    """The deterministic sequence of points of one kind ("fp" or "quant") for one search space."""

    def __init__(self, space: SearchSpace, kind: str, seed: int, policies_per_arch: int = 10,
                 scheme2_fraction: float = 0.5, fixed_bits: int | None = None):
        if kind not in _KIND_CODES:
            raise InputError(f"kind: '{kind}' not allowed; allowed values: {list(_KIND_CODES)}")
        if not 0 <= scheme2_fraction <= 1:
            raise InputError(f"scheme2_fraction: {scheme2_fraction} must be within [0, 1]")
        if policies_per_arch < 1:
            raise InputError(f"policies_per_arch: {policies_per_arch} must be >= 1")
        self.space, self.kind, self.seed = space, kind, int(seed)
        self.policies_per_arch, self.scheme2_fraction = int(policies_per_arch), float(scheme2_fraction)
        self.genome = Genome(space)
        self.fixed_bits = fixed_bits if kind == "quant" else None
        if self.fixed_bits is not None:
            self.genome.with_bits(self.genome.smallest(), self.fixed_bits)  # fails early if it is not a choice
        if kind == "fp":
            self.genome.with_bits(self.genome.smallest(), FP_BITS)  # fails early if 8 bits is not a choice
        self._bit_cols = np.concatenate([self.genome.slot_columns(g) for g in (PW_W, PW_A, DW_W, DW_A)])

    def describe(self) -> dict:
        """What makes two plans the same sequence (recorded beside the collected shards)."""
        out = {"version": PLAN_VERSION, "kind": self.kind, "seed": self.seed, "space": self.space.name}
        if self.kind == "quant":
            out |= {"policies_per_arch": self.policies_per_arch, "scheme2_fraction": self.scheme2_fraction}
        if self.fixed_bits is not None:
            out["fixed_bits"] = self.fixed_bits
        return out

    def arch_ids(self, genes: np.ndarray) -> np.ndarray:
        """16-hex-digit id of each row's architecture (depths, kernels, mid channels; bits ignored)."""
        arch = np.array(np.atleast_2d(genes), dtype=np.int16, copy=True)
        arch[:, self._bit_cols] = 0
        arch = self.genome.canonical(arch).astype("<i2")
        return np.asarray([hashlib.sha1(row.tobytes()).hexdigest()[:16] for row in arch], dtype=object)

    def _group_rng(self, group: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _KIND_CODES[self.kind], group])

    def point_seeds(self, sample_ids: np.ndarray) -> np.ndarray:
        """Evaluation seed of each point (BN-recalibration batches, fine-tune order)."""
        code = _KIND_CODES[self.kind]
        return np.asarray(
            [np.random.SeedSequence([self.seed, code, _SEED_STREAM + int(i)]).generate_state(1)[0] >> 1
             for i in sample_ids], dtype=np.int64)

    def take(self, n: int) -> PlannedSamples:
        """The first n points."""
        g = self.genome
        rows: list[np.ndarray] = []
        schemes: list[int] = []
        group, from_scheme2 = 0, 0
        while len(rows) < n:
            rng = self._group_rng(group)
            group += 1
            if self.kind == "fp":
                rows.append(g.sample(rng, 1, fixed_bits=FP_BITS)[0])
                schemes.append(0)
                continue
            if self.fixed_bits is not None:
                rows.append(g.sample(rng, 1, fixed_bits=self.fixed_bits)[0])
                schemes.append(1)
                continue
            arch = g.sample(rng, 1)
            if from_scheme2 < self.scheme2_fraction * max(len(rows), 1):
                policies = g.sample(rng, self.policies_per_arch)
                group_rows = np.repeat(arch, self.policies_per_arch, axis=0)
                group_rows[:, self._bit_cols] = policies[:, self._bit_cols]
                rows.extend(group_rows)
                schemes.extend([2] * len(group_rows))
                from_scheme2 += len(group_rows)
            else:
                rows.append(arch[0])
                schemes.append(1)
        genes = g.canonical(np.stack(rows[:n]) if n else np.zeros((0, g.width), np.int16)).astype(np.int16)
        ids = np.arange(n, dtype=np.int64)
        return PlannedSamples(ids, np.asarray(schemes[:n], dtype=np.int8), self.arch_ids(genes), genes,
                              self.point_seeds(ids))

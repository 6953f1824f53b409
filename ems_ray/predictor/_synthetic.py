"""A synthetic stand-in for collected data: a smooth ground truth of the genes plus noise.

For tests and for exercising the transfer experiment before real data exists. The ground truth
has the structure the predictors must learn, and nothing more is claimed for it:
- FP accuracy saturates in the network's capacity; a block's capacity grows with kernel and
  width and with their product (an interaction), later stages count more;
- quantization costs accuracy per active block, more for low bits, more for narrow blocks at low
  weight bits, more for small kernels at low depthwise-weight bits, and extra when a pointwise
  conv has both low weight and low activation bits; deeper networks accumulate more of it.
So the order before and after quantization is mostly, not entirely, preserved (the paper's
premise for transfer). Rows carry the collection schema's columns, with made-up costs and
bookkeeping.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ems_ray.space import ENCODING_VERSION, Genome, SearchSpace
from ems_ray.space.genome import DW_A, DW_W, KERNEL, MID, PW_A, PW_W


def _fraction(genome: Genome, genes: np.ndarray, gene: int) -> np.ndarray:
    """(n, slots) choice index scaled to [0, 1] (0 = smallest choice)."""
    cols = genome.slot_columns(gene)
    return genes[:, cols] / np.maximum(genome.choice_counts[cols] - 1, 1)


def synthetic_accuracy(space: SearchSpace, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free (FP accuracy, quantized accuracy) of gene rows."""
    g = Genome(space)
    genes = np.atleast_2d(genes).astype(np.int64)
    active = g.active(genes).astype(np.float64)
    stage = np.asarray([sl.stage for sl in space.slots])
    weight = 1.0 + 0.6 * stage / max(len(space.stages) - 1, 1)
    k, w = _fraction(g, genes, KERNEL), _fraction(g, genes, MID)
    cap = (weight * active * (0.45 + 0.3 * k + 0.45 * w + 0.35 * k * w)).sum(axis=1)
    cap_max = (weight * 1.55).sum()
    fp = 0.74 + 0.18 * (1 - np.exp(-3.0 * cap / cap_max)) / (1 - np.exp(-3.0))
    low = {b: 1.0 - _fraction(g, genes, b) for b in (PW_W, PW_A, DW_W, DW_A)}  # 1 = fewest bits
    drop = (0.0030 * low[PW_W] * (1.6 - w) + 0.0035 * low[PW_A] + 0.0025 * low[DW_W] * (1.6 - k)
            + 0.0012 * low[DW_A] + 0.0030 * low[PW_W] * low[PW_A])
    depth = active.sum(axis=1) / len(space.slots)  # share of blocks in use
    quant = fp - (weight * active * drop).sum(axis=1) * (4 / len(space.slots)) * (0.6 + 0.4 * depth)
    return fp, quant


def synthetic_collection(space: SearchSpace, n_fp: int, n_quant: int, seed: int = 0, noise: float = 0.004,
                         policies_per_arch: int = 10):
    """(fp_table, quant_table) as pyarrow Tables in the collection schema (`COLLECT_SCHEMA`).

    FP rows: random architectures at the largest bit-widths (scheme 0). Quant rows: half random
    architecture and policy (scheme 1), half random architectures with `policies_per_arch` random
    policies each (scheme 2), as the paper collects them.
    """
    from ems_ray.collect.schema import to_table

    g = Genome(space)
    rng = np.random.default_rng(seed)
    top_bits = max(space.bits.pw_w)
    fp_genes = g.canonical(g.sample(rng, n_fp, fixed_bits=top_bits))
    n_random = n_quant // 2
    n_archs = -(-(n_quant - n_random) // policies_per_arch)
    archs = np.repeat(g.sample(rng, n_archs), policies_per_arch, axis=0)[: n_quant - n_random]
    policies = g.sample(rng, len(archs))
    quant_cols = np.concatenate([g.slot_columns(b) for b in (PW_W, PW_A, DW_W, DW_A)])
    archs[:, quant_cols] = policies[:, quant_cols]
    q_genes = g.canonical(np.concatenate([g.sample(rng, n_random), archs]))
    q_schemes = np.asarray([1] * n_random + [2] * (n_quant - n_random), dtype=np.int8)

    fp_true, _ = synthetic_accuracy(space, fp_genes)
    q_fp_true, q_true = synthetic_accuracy(space, q_genes)
    fp_acc = np.clip(fp_true + rng.normal(0, noise, n_fp), 0, 1)
    q_acc = np.clip(q_true + rng.normal(0, noise, n_quant), 0, 1)
    q_fp_acc = np.clip(q_fp_true + rng.normal(0, noise, n_quant), 0, 1)

    def table(kind: str, genes: np.ndarray, acc: np.ndarray, scheme: np.ndarray, fp_accuracy):
        n = len(genes)
        size = g.active(genes).sum(axis=1) if n else np.zeros(0, np.int64)
        arch = g.canonical(g.with_bits(genes, top_bits)) if n else genes
        return to_table({
            "sample_id": np.arange(n, dtype=np.int64), "kind": [kind] * n, "scheme": scheme,
            "arch_id": [hashlib.sha1(r.astype("<i2").tobytes()).hexdigest()[:16] for r in arch],
            "genes": genes, "encoding_version": [ENCODING_VERSION] * n, "accuracy": acc.astype(np.float64),
            "fp_accuracy": fp_accuracy, "latency_ms": 0.3 * size, "energy_mj": 0.02 * size,
            "bitops": (10**6 * size).astype(np.int64), "macs": (2 * 10**4 * size).astype(np.int64),
            "supernet_sha256": ["synthetic"] * n, "seed": np.full(n, seed, np.int64),
            "wall_seconds": np.zeros(n), "device": ["cpu"] * n, "node": ["synthetic"] * n,
            "worker": ["synthetic"] * n,
        })

    return (table("fp", fp_genes, fp_acc, np.zeros(n_fp, np.int8), [None] * n_fp),
            table("quant", q_genes, q_acc, q_schemes, q_fp_acc))


def write_synthetic_collection(collect_dir: str | Path, space: SearchSpace, n_fp: int, n_quant: int,
                               seed: int = 0, noise: float = 0.004) -> Path:
    """Write one shard each (as collection names them, with their digest) into `<collect_dir>/fp/`
    and `<collect_dir>/quant/`."""
    from ems_ray.collect.shards import write_shard

    collect_dir = Path(collect_dir)
    for kind, t in zip(("fp", "quant"), synthetic_collection(space, n_fp, n_quant, seed, noise)):
        if t.num_rows:
            write_shard(collect_dir / kind, t)
    return collect_dir

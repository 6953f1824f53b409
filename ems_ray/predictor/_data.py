"""Collected (sub-net, accuracy) rows as arrays, read from the collection stage's Parquet.

Layout written by `ems_ray.collect`: `<collect_dir>/fp/*.parquet` and `<collect_dir>/quant/*.parquet`,
one row per measured sub-net. Columns used here: `sample_id`, `genes` (the `Genome` row),
`encoding_version`, `accuracy`, and optionally `kind`, `arch_id` (the train / early-stopping / test
splits keep every row of an architecture in one split), `scheme` and `supernet_sha256`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ems_ray.errors import InputError
from ems_ray.space import ENCODING_VERSION, Genome, SearchSpace

REQUIRED_COLUMNS = ("sample_id", "genes", "encoding_version", "accuracy")


class CollectedDataError(InputError):
    """Collected data that is missing, or was made for another search space or encoding."""


@dataclass
class SampleSet:
    """Measured sub-nets of one kind: gene rows, accuracies, ids and architecture groups."""

    genes: np.ndarray  # (n, genome width) int16
    accuracy: np.ndarray  # (n,) float32
    sample_id: np.ndarray  # (n,) str
    arch_id: np.ndarray  # (n,) str; equal for rows of the same architecture

    def __len__(self) -> int:
        return len(self.accuracy)

    def subset(self, idx: np.ndarray) -> SampleSet:
        return SampleSet(self.genes[idx], self.accuracy[idx], self.sample_id[idx], self.arch_id[idx])

    @classmethod
    def empty(cls, width: int) -> SampleSet:
        return cls(np.zeros((0, width), np.int16), np.zeros(0, np.float32), np.zeros(0, str), np.zeros(0, str))


@dataclass
class CollectedData:
    """FP and quantized samples for one search space, plus what was noticed while reading."""

    fp: SampleSet
    quant: SampleSet
    notes: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """Changes when any row is added, removed or re-measured."""
        h = hashlib.sha256()
        for part in (self.fp, self.quant):
            order = np.argsort(part.sample_id, kind="stable")
            h.update("\n".join(part.sample_id[order].tolist()).encode())
            h.update(part.accuracy[order].astype(np.float32).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        out = {}
        for name, part in (("fp", self.fp), ("quant", self.quant)):
            acc = part.accuracy
            out[name] = {"rows": len(part), "architectures": int(len(np.unique(part.arch_id))),
                         **({"accuracy_min": float(acc.min()), "accuracy_mean": float(acc.mean()),
                             "accuracy_max": float(acc.max()), "accuracy_std": float(acc.std())} if len(acc) else {})}
        return out


def samples_from_table(table, space: SearchSpace, kind: str, source: str = "table",
                       scheme: int | None = None, notes: list[str] | None = None) -> SampleSet:
    """Validate a collection table against `space` and turn it into arrays (deduplicated)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    genome = Genome(space)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise CollectedDataError(f"{source}: missing columns {missing}; expected the collection schema "
                                 f"(at least {list(REQUIRED_COLUMNS)})")
    notes = notes if notes is not None else []
    if table.num_rows == 0:
        return SampleSet.empty(genome.width)
    versions = sorted(set(table.column("encoding_version").to_pylist()))
    if versions != [ENCODING_VERSION]:
        raise CollectedDataError(
            f"{source}: rows were encoded with {versions}, this build's encoding is '{ENCODING_VERSION}'; "
            "re-collect the data (or convert it) for this encoding version")
    if "kind" in table.column_names:
        kinds = sorted(set(table.column("kind").to_pylist()))
        if kinds != [kind]:
            raise CollectedDataError(f"{source}: expected only '{kind}' rows, found kinds {kinds}")
    if scheme is not None:
        if "scheme" not in table.column_names:
            raise CollectedDataError(f"{source}: quant_scheme {scheme} asked for, but there is no 'scheme' column")
        schemes = np.asarray(table.column("scheme").to_pylist())
        table = table.filter(pa.array(schemes == scheme))
        if table.num_rows == 0:
            raise CollectedDataError(f"{source}: no rows with scheme {scheme} (found {sorted(set(schemes.tolist()))})")
    lengths = pc.list_value_length(table.column("genes")).to_numpy(zero_copy_only=False)
    bad = np.unique(lengths[lengths != genome.width])
    if bad.size:
        raise CollectedDataError(
            f"{source}: gene rows have {bad.tolist()} entries, search space '{space.name}' needs "
            f"{genome.width} (was this data collected for another search space?)")
    genes = (pc.list_flatten(table.column("genes")).to_numpy(zero_copy_only=False)
             .astype(np.int64).reshape(-1, genome.width))
    out_of_range = (genes < 0) | (genes >= genome.choice_counts[None, :])
    if out_of_range.any():
        row, col = map(int, np.argwhere(out_of_range)[0])
        raise CollectedDataError(
            f"{source}: gene column {col} of row {row} is {genes[row, col]}, outside [0, {genome.choice_counts[col]}) "
            f"for search space '{space.name}' ({int(out_of_range.any(axis=1).sum())} such rows)")
    accuracy = table.column("accuracy").to_numpy(zero_copy_only=False).astype(np.float64)
    finite = np.isfinite(accuracy)
    if not finite.all():
        notes.append(f"{source}: dropped {int((~finite).sum())} rows without a finite accuracy")
    if np.any((accuracy[finite] < 0) | (accuracy[finite] > 1)):
        raise CollectedDataError(f"{source}: accuracy must be a fraction in [0, 1]; found values outside "
                                 f"(min {accuracy[finite].min():.4g}, max {accuracy[finite].max():.4g})")
    sample_id = np.asarray(table.column("sample_id").to_pylist(), dtype=str)
    arch_id = (np.asarray(table.column("arch_id").to_pylist(), dtype=str) if "arch_id" in table.column_names
               else sample_id)
    _, first = np.unique(sample_id, return_index=True)
    keep = np.zeros(len(sample_id), bool)
    keep[first] = True
    if (~keep).sum():
        notes.append(f"{source}: dropped {int((~keep).sum())} duplicate sample ids")
    keep &= finite
    if "supernet_sha256" in table.column_names:
        shas = sorted(set(table.column("supernet_sha256").to_pylist()))
        if len(shas) > 1:
            notes.append(f"{source}: rows come from {len(shas)} different super networks: {shas}")
    idx = np.flatnonzero(keep)
    return SampleSet(genes[idx].astype(np.int16), accuracy[idx].astype(np.float32), sample_id[idx], arch_id[idx])


def _read_dir(path: Path):
    """Every shard under `path`, each verified against its digest (CorruptShardError names a bad one)."""
    import pyarrow as pa

    from ems_ray.collect.shards import read_shard

    # hidden/underscore names are temporary or bookkeeping files (as pyarrow and Ray Data skip them)
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file() and not p.name.startswith((".", "_")))
    if not files:
        return None
    return pa.concat_tables([read_shard(f) for f in files])


def load_collected(collect_dir: str | Path, space: SearchSpace, quant_scheme: int | None = None) -> CollectedData:
    """Read `<collect_dir>/fp` and `<collect_dir>/quant` (the quantized part may be absent)."""
    collect_dir = Path(collect_dir)
    fp_dir, quant_dir = collect_dir / "fp", collect_dir / "quant"
    width = Genome(space).width
    fp_table = _read_dir(fp_dir) if fp_dir.is_dir() else None
    if fp_table is None:
        raise CollectedDataError(f"no full-precision samples under {fp_dir} (run `ems-ray collect fp` first)")
    notes: list[str] = []
    fp = samples_from_table(fp_table, space, "fp", str(fp_dir), notes=notes)
    quant_table = _read_dir(quant_dir) if quant_dir.is_dir() else None
    if quant_table is None:
        notes.append(f"no quantized samples under {quant_dir}: only the FP predictor can be trained")
        quant = SampleSet.empty(width)
    else:
        quant = samples_from_table(quant_table, space, "quant", str(quant_dir), quant_scheme, notes)
    if len(fp) < 10:
        raise CollectedDataError(f"{fp_dir}: {len(fp)} usable FP samples; at least 10 are needed")
    return CollectedData(fp, quant, notes)


def split_by_group(groups: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) row indices; all rows of a group land on the same side.

    At least one group is held out and at least one kept, so tiny sets still have both sides.
    """
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) < 2:
        raise InputError(f"need at least 2 architectures to hold some out, got {len(uniq)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    n_val = min(max(1, int(round(val_fraction * len(uniq)))), len(uniq) - 1)
    is_val = np.zeros(len(uniq), bool)
    is_val[order[:n_val]] = True
    mask = is_val[inverse]
    return np.flatnonzero(~mask), np.flatnonzero(mask)


TRAIN, EARLY_STOP, TEST = 0, 1, 2  # split labels of `split_by_architecture`


def _architecture_draws(groups: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per group that depends only on (seed, group name)."""
    return np.asarray([int.from_bytes(hashlib.blake2b(f"{seed}:{g}".encode(), digest_size=8).digest(), "big") / 2**64
                       for g in groups.tolist()])


def split_by_architecture(groups: np.ndarray, val_fraction: float, test_fraction: float, seed: int
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (train, early-stopping, test) row indices; all rows of a group land in one split.

    A group's split depends only on (seed, group name): its draw u < `test_fraction` is test,
    u < `test_fraction + val_fraction` early-stopping, the rest train. So one architecture is in
    the same split in the FP and the quantized sets (the transferred predictor's test
    architectures were not in the FP training split either), whatever else either set holds.
    A set so small that a split would be empty is cut by rank of the draws instead (exact counts,
    at least one group each).
    """
    if val_fraction <= 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
        raise InputError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be positive "
                         "and sum to less than 1")
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) < 3:
        raise InputError(f"need at least 3 architectures for train, early-stopping and test splits, got {len(uniq)}")
    draws = _architecture_draws(uniq, seed)
    label = np.where(draws < test_fraction, TEST, np.where(draws < test_fraction + val_fraction, EARLY_STOP, TRAIN))
    if len(np.unique(label)) < 3:
        n = len(uniq)
        n_test = min(max(1, round(test_fraction * n)), n - 2)
        n_val = min(max(1, round(val_fraction * n)), n - 1 - n_test)
        order = np.argsort(draws, kind="stable")
        label[order] = TRAIN
        label[order[:n_test]] = TEST
        label[order[n_test:n_test + n_val]] = EARLY_STOP
    rows = label[inverse]
    return tuple(np.flatnonzero(rows == k) for k in (TRAIN, EARLY_STOP, TEST))

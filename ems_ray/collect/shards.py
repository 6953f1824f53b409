"""Collected points on disk: a folder of Parquet shards, each written atomically, one per batch.

Shard names carry the batch's sample-id range and the digest of the file's bytes
(`part-<first>-<last>-<sha256, first 12 hex digits>.parquet`): the digest lives in the name rather
than in a `.sha256` file beside it (as other artifacts have, see `ems_ray.artifacts`) so the folder
still reads as one table with `pyarrow.parquet.read_table` or `ray.data.read_parquet`, and a shard
is still written with one rename. Every reader here (`scan`, `read_points`, `read_shard`) hashes
the bytes it parses, so a damaged page is named before its rows are used. A shard is written to a
hidden temporary file in the same folder and renamed, so a crash leaves either the whole shard or
nothing (pyarrow and Ray Data skip names starting with "." or "_"); `read_points` also drops
duplicate sample ids as a last guard.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ems_ray.artifacts import digest_problem, sha256_hex, write_atomic
from ems_ray.errors import InputError

from .schema import COLLECT_FORMAT, COLLECT_SCHEMA

SHARD_GLOB = "part-*.parquet"
SHARD_NAME = re.compile(r"part-(\d+)-(\d+)-([0-9a-f]{12,64})\.parquet")
DIGEST_CHARS = 12  # of the sha256 in a shard's name: a random change matches with odds 2^-48
MANIFEST = "_plan.json"


class CollectError(InputError):
    """A collection that cannot start or continue: bad output folder, mismatched plan, no workers."""


class CorruptShardError(CollectError):
    """An existing shard that cannot be read or has another schema; the file is left in place."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        super().__init__(f"collection shard {path}: {reason}. {_recover(path)}")


def _recover(path: Path) -> str:
    """What to do about a bad shard: only its own points need measuring again."""
    match = SHARD_NAME.fullmatch(path.name)
    ids = f" (sample ids {int(match[1])}..{int(match[2])})" if match else ""
    kind = f" {path.parent.name}" if path.parent.name in ("fp", "quant") else ""
    return (f"Shard {path.name} only: delete it (or move it aside) and re-run `ems-ray collect{kind}` to "
            f"re-measure its points{ids}; the other shards are kept")


def shard_name(table: pa.Table, data: bytes) -> str:
    """`part-<first>-<last>-<digest>.parquet` of a shard's rows and Parquet bytes."""
    ids = table.column("sample_id").to_numpy()
    return f"part-{ids.min():09d}-{ids.max():09d}-{sha256_hex(data)[:DIGEST_CHARS]}.parquet"


def write_shard(folder: str | Path, table: pa.Table) -> Path:
    """Write `table` as one shard of `folder`, named by its sample ids and digest, atomically."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    return write_atomic(Path(folder) / shard_name(table, data), data)


def read_shard(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """One shard's rows (or `columns` of them), after checking its bytes against the digest in its
    name and its columns against the collection schema; CorruptShardError names it otherwise."""
    path = Path(path)
    match = SHARD_NAME.fullmatch(path.name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptShardError(path, f"cannot read it ({exc.strerror or exc})") from None
    problem = digest_problem(data, match and match[3], "its name" if match
                             else "its name is not part-<first>-<last>-<sha256 prefix>.parquet")
    if problem:
        raise CorruptShardError(path, problem)
    try:
        schema = pq.read_schema(pa.BufferReader(data))
        table = pq.read_table(pa.BufferReader(data), columns=columns)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise CorruptShardError(path, f"{exc.__class__.__name__}: {exc}") from None
    if not schema.remove_metadata().equals(COLLECT_SCHEMA):
        raise CorruptShardError(path, "its columns do not match the collection schema")
    return table


class ShardStore:
    """The shards of one collection folder; knows which sample ids are done and never writes one twice."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._done: set[int] = set()

    # ----- set-up checks -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the folder and prove it is writable (before any work)."""
        probe = self.folder / f".write-test-{os.getpid()}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise CollectError(f"output folder {self.folder} is not writable: {exc.strerror or exc}") from None

    def check_manifest(self, manifest: dict) -> None:
        """Record what this folder collects, or fail if it already holds another collection."""
        path = self.folder / MANIFEST
        manifest = {"format": COLLECT_FORMAT, **manifest}
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise CollectError(f"cannot read {path}: {exc}") from None
            changed = sorted(k for k in manifest.keys() | old.keys() if old.get(k) != manifest.get(k))
            if changed:
                detail = "; ".join(f"{k}: {old.get(k)!r} → {manifest.get(k)!r}" for k in changed)
                raise CollectError(
                    f"{self.folder} holds points collected with other settings ({detail}). Collect into "
                    "another run_dir, or move that folder away to start over"
                )
            return
        write_atomic(path, json.dumps(manifest, indent=1, sort_keys=True))

    # ----- reading ---------------------------------------------------------------------------
    def shard_files(self) -> list[Path]:
        return sorted(self.folder.glob(SHARD_GLOB)) if self.folder.is_dir() else []

    def scan(self) -> set[int]:
        """Verify every shard (its whole bytes against the digest in its name, its schema) and
        return the sample ids already done."""
        done: set[int] = set()
        for path in self.shard_files():
            done.update(read_shard(path, ["sample_id"]).column("sample_id").to_numpy().tolist())
        self._done = done
        return set(done)

    @property
    def done(self) -> set[int]:
        return set(self._done)

    # ----- writing ---------------------------------------------------------------------------
    def write(self, table: pa.Table) -> Path | None:
        """Write the rows whose sample ids are not done yet as one shard; None if nothing is new."""
        ids = table.column("sample_id").to_numpy()
        fresh = ~np.isin(ids, np.fromiter(self._done, dtype=np.int64, count=len(self._done)))
        _, first = np.unique(ids, return_index=True)
        unique = np.zeros(len(ids), dtype=bool)
        unique[first] = True
        keep = fresh & unique
        if not keep.any():
            return None
        table = table.filter(pa.array(keep)).sort_by("sample_id").cast(COLLECT_SCHEMA)
        path = write_shard(self.folder, table)
        self._done.update(table.column("sample_id").to_numpy().tolist())
        return path


def read_points(folder: str | Path) -> pa.Table:
    """All collected points of a folder, sorted by sample id, duplicates dropped (first kept)."""
    store = ShardStore(folder)
    if not store.folder.is_dir():
        raise CollectError(f"no collected points at {store.folder}")
    files = store.shard_files()
    table = pa.concat_tables([read_shard(p) for p in files]).cast(COLLECT_SCHEMA) if files \
        else COLLECT_SCHEMA.empty_table()
    return dedupe(table)


def dedupe(table: pa.Table) -> pa.Table:
    """One row per sample id (the first seen), sorted by sample id."""
    if table.num_rows == 0:
        return table
    _, first = np.unique(table.column("sample_id").to_numpy(), return_index=True)
    return table.take(pa.array(first)).sort_by("sample_id")

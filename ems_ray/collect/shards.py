"""Collected points on disk: a folder of Parquet shards, each written atomically, one per batch.

Shard names carry the batch's sample-id range and a hash of its content
(`part-<first>-<last>-<hash>.parquet`); a shard is written to a hidden temporary file in the same
folder and renamed, so a crash leaves either the whole shard or nothing (pyarrow and Ray Data skip
names starting with "." or "_"). The folder reads as one table with `pyarrow.parquet.read_table`
or `ray.data.read_parquet`; `read_points` also drops duplicate sample ids as a last guard.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ems_ray.artifacts import write_atomic
from ems_ray.errors import InputError

from .schema import COLLECT_FORMAT, COLLECT_SCHEMA

SHARD_GLOB = "part-*.parquet"
MANIFEST = "_plan.json"


class CollectError(InputError):
    """A collection that cannot start or continue: bad output folder, mismatched plan, no workers."""


class CorruptShardError(CollectError):
    """An existing shard that cannot be read or has another schema; the file is left in place."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        super().__init__(f"corrupt collection shard {path}: {reason}. Move or delete this file (its points "
                         "are measured again on the next run), or collect into another run_dir")


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
        """Validate every shard (readable, right schema) and return the sample ids already done."""
        done: set[int] = set()
        for path in self.shard_files():
            try:
                schema = pq.read_schema(path)
                ids = pq.read_table(path, columns=["sample_id"]).column("sample_id").to_numpy()
            except Exception as exc:  # pyarrow raises several types for damaged files
                raise CorruptShardError(path, f"{exc.__class__.__name__}: {exc}") from None
            if not schema.remove_metadata().equals(COLLECT_SCHEMA):
                raise CorruptShardError(path, "its columns do not match the collection schema")
            done.update(ids.tolist())
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
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        ids = table.column("sample_id").to_numpy()
        name = f"part-{ids[0]:09d}-{ids[-1]:09d}-{hashlib.sha256(data).hexdigest()[:12]}.parquet"
        path = write_atomic(self.folder / name, data)
        self._done.update(ids.tolist())
        return path


def read_points(folder: str | Path) -> pa.Table:
    """All collected points of a folder, sorted by sample id, duplicates dropped (first kept)."""
    store = ShardStore(folder)
    if not store.folder.is_dir():
        raise CollectError(f"no collected points at {store.folder}")
    store.scan()
    files = store.shard_files()
    table = pa.concat_tables([pq.read_table(p) for p in files]).cast(COLLECT_SCHEMA) if files \
        else COLLECT_SCHEMA.empty_table()
    return dedupe(table)


def dedupe(table: pa.Table) -> pa.Table:
    """One row per sample id (the first seen), sorted by sample id."""
    if table.num_rows == 0:
        return table
    _, first = np.unique(table.column("sample_id").to_numpy(), return_index=True)
    return table.take(pa.array(first)).sort_by("sample_id")

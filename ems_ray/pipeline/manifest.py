"""`<run_dir>/manifest.json`: what each stage of a run read, wrote and took, so a re-run can skip
finished stages and anyone can see where a run stands.

A stage entry is written `running` before the stage starts and `done` (or `failed`) after; a
driver killed mid-stage leaves `running`, which a re-run treats as unfinished (the stage itself
resumes from its own checkpoints or shards). Entries record digests of the stage's inputs and
outputs and a fingerprint of its settings; a `done` stage is skipped only when its fingerprint
matches and its outputs still hash to what was recorded (the runner then also reads them back
with their own readers). The manifest itself is written with its digest (`manifest.json.sha256`)
and verified when read.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ems_ray.artifacts import read_verified, update_sha256, write_artifact
from ems_ray.errors import InputError
from ems_ray.run_layout import RunLayout

MANIFEST_FILE = RunLayout(Path(".")).manifest.name
FORMAT = "ems-ray-manifest-v1"


class ManifestError(InputError):
    """A damaged, unreadable or foreign manifest file."""


RECOVER = "move it aside to rebuild it (finished stages are then re-checked, not redone)"


def path_digest(path: Path) -> str | None:
    """SHA-256 of a file, or of a folder's visible files (relative names and contents); None if
    absent. Hidden and `_`-prefixed names are skipped: temporary files and Ray/Tune internals."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts))
    else:
        return None
    h = hashlib.sha256()
    for f in files:
        if f != path:
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        update_sha256(h, f)
    return h.hexdigest()


@dataclass
class StageRecord:
    name: str
    status: str = "pending"  # pending | running | done | failed
    fingerprint: str = ""
    inputs: dict[str, str | None] = field(default_factory=dict)
    outputs: dict[str, str | None] = field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    attempts: int = 0
    error: str | None = None


def _stage_record(entry: object, where: str) -> StageRecord:
    """A manifest entry as a `StageRecord`; one with other keys than a record's is not ours."""
    expected = [f.name for f in fields(StageRecord)]
    if not isinstance(entry, dict):
        problem = f"a {type(entry).__name__}, not a mapping"
    else:
        unknown, missing = sorted(set(entry) - set(expected)), [k for k in expected if k not in entry]
        problem = "; ".join(f"{what} key(s) {keys}" for what, keys in (("unknown", unknown), ("missing", missing))
                            if keys)
    if problem:
        raise ManifestError(f"{where} is not a stage record ({problem}; a record has {expected}); move the "
                            "manifest aside to rebuild it (finished stages are then re-checked, not redone)")
    return StageRecord(**entry)


class Manifest:
    """The run's stage records, saved atomically after every change."""

    def __init__(self, run_dir: str | Path, config_name: str):
        self.path = RunLayout(run_dir).manifest
        self.config_name = config_name
        self.stages: dict[str, StageRecord] = {}
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        data = read_verified(self.path, "run manifest", ManifestError, RECOVER)
        try:
            blob = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read the run manifest {self.path}: {exc}; {RECOVER}") from exc
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ManifestError(f"{self.path} is not an ems-ray run manifest (expected format {FORMAT})")
        for index, entry in enumerate(blob.get("stages", [])):
            record = _stage_record(entry, f"{self.path}: stages[{index}]")
            self.stages[record.name] = record

    def save(self) -> None:
        blob = {"format": FORMAT, "config_name": self.config_name, "updated": time.time(),
                "stages": [asdict(r) for r in self.stages.values()]}
        write_artifact(self.path, json.dumps(blob, indent=1))

    def record(self, name: str) -> StageRecord:
        return self.stages.setdefault(name, StageRecord(name))

    def is_current(self, name: str, fingerprint: str) -> bool:
        """Done with these settings and inputs, and every recorded output unchanged on disk."""
        r = self.stages.get(name)
        if r is None or r.status != "done" or r.fingerprint != fingerprint:
            return False
        return all(path_digest(self.path.parent / p) == digest for p, digest in r.outputs.items())

    def start(self, name: str, fingerprint: str, inputs: dict[str, str | None]) -> None:
        r = self.record(name)
        r.status, r.fingerprint, r.inputs, r.error = "running", fingerprint, inputs, None
        r.started, r.finished, r.seconds = time.time(), None, None
        r.attempts += 1
        self.save()

    def finish(self, name: str, outputs: dict[str, str | None]) -> None:
        r = self.stages[name]
        r.status, r.outputs, r.finished = "done", outputs, time.time()
        r.seconds = round(r.finished - (r.started or r.finished), 1)
        self.save()

    def fail(self, name: str, error: BaseException) -> None:
        r = self.stages[name]
        r.status, r.finished = "failed", time.time()
        r.seconds = round(r.finished - (r.started or r.finished), 1)
        r.error = f"{type(error).__name__}: {error}"
        self.save()

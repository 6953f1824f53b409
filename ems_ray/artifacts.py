"""Files that later stages read, written with their content digest and verified when read.

Every artifact (super network, training checkpoints, LUT, predictors, exports, the run manifest)
is written atomically with its SHA-256 beside it, in `<file>.sha256` (the `sha256sum` format, so
`sha256sum -c <file>.sha256` checks it too); collection shards carry theirs in their name instead
(`collect/shards.py`: a shard folder must read as one Parquet dataset). Readers hash the bytes
they parse, so a flipped, truncated or edited file fails with a one-line error naming it and
saying how to recover; the damaged file is left as it is, and no writer replaces one.

A file without a digest (written before digests were recorded) is refused too: whoever trusts it
records one with `sha256sum FILE > FILE.sha256` (docs/pipeline.md, "Integrity").
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from ems_ray.errors import InputError

DIGEST_SUFFIX = ".sha256"


class DamagedArtifactError(InputError):
    """A file that does not match its recorded digest; raised by writers asked to replace one."""


def digest_path(path: str | Path) -> Path:
    """Where the digest of `path` is recorded: `<path>.sha256`."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_hidden(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write `data` to a hidden temporary file beside `path`, fsync, then rename: a reader (or a
    resumed run) sees the old file or the whole new one, never half of it. Hidden names are what
    readers and digests skip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_write_hidden(path, data.encode() if isinstance(data, str) else data), path)
    return path


def write_artifact(path: str | Path, data: bytes | str) -> Path:
    """`write_atomic` plus the digest beside the file, renamed in right after it (a writer killed
    between the two renames leaves a file that fails verification, never one that passes wrongly).
    Refuses (DamagedArtifactError) to replace a file that no longer matches its recorded digest."""
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = digest_path(path)
    if path.is_file() and sidecar.is_file():
        recorded = _recorded_digest(sidecar)
        if recorded != sha256_hex(path.read_bytes()):
            raise DamagedArtifactError(
                f"refusing to replace {path}: it does not match its digest in {sidecar.name} (damaged?); "
                "move it aside, then re-run")
    tmp, tmp_digest = _write_hidden(path, data), _write_hidden(sidecar, f"{sha256_hex(data)}  {path.name}\n".encode())
    os.replace(tmp, path)
    os.replace(tmp_digest, sidecar)
    return path


def _recorded_digest(sidecar: Path) -> str | None:
    """The hex digest in a `sha256sum`-style line, or None when the line is not one."""
    try:
        token = sidecar.read_text().split(maxsplit=1)[0].lower()
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    return token if len(token) == 64 and all(c in "0123456789abcdef" for c in token) else None


def digest_problem(data: bytes, recorded: str | None, source: str) -> str | None:
    """Why `data` fails its recorded digest (a full one or a prefix of one), or None when it passes;
    `source` says where the digest was recorded."""
    if not recorded:
        return (f"it has no content digest ({source}), so it cannot be verified: it was written before ems-ray "
                "recorded digests, or its writer was stopped")
    actual = sha256_hex(data)
    if not actual.startswith(recorded):
        return (f"it is damaged: its {len(data)} bytes hash to sha256 {actual[:12]}, {source} records "
                f"{recorded[:12]}; the file is left as it is")
    return None


def read_verified(path: str | Path, what: str, error: type[Exception], recover: str,
                  missing_hint: str | None = None) -> bytes:
    """The bytes of `path`, checked against `<path>.sha256`; `error` naming the file otherwise
    (missing: with `missing_hint`; damaged or without digest: with `recover`)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}" + (f" ({missing_hint})" if missing_hint else ""))
    data = path.read_bytes()
    sidecar = digest_path(path)
    recorded = _recorded_digest(sidecar) if sidecar.is_file() else None
    source = sidecar.name if recorded else f"{sidecar.name} is {'unreadable' if sidecar.is_file() else 'missing'}"
    problem = digest_problem(data, recorded, source)
    if problem:
        adopt = "" if recorded else (f"If you trust it, record one with `sha256sum {path.name} > {sidecar.name}` "
                                     f"in {path.parent}; otherwise ")
        raise error(f"{what} {path}: {problem}. {adopt}{recover if adopt else recover[0].upper() + recover[1:]}")
    return data


def save_artifact(path: str | Path, blob: dict) -> Path:
    """`torch.save` to bytes, then `write_artifact`: a killed writer never leaves half a file."""
    import torch

    buffer = io.BytesIO()
    torch.save(blob, buffer)
    return write_artifact(path, buffer.getvalue())


def load_torch_bytes(data: bytes, path: Path, what: str, error: type[Exception]):
    """`torch.load` of verified bytes with `weights_only=True`; `error` naming `path` if it fails."""
    import torch

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or unsafe files
        raise error(f"cannot read {what} {path}: {exc.__class__.__name__}: {exc}") from exc


def read_artifact(path: str | Path, fmt: str, what: str, error: type[Exception], missing_hint: str,
                  recover: str) -> dict:
    """The dict in `path`, verified against its digest, whose "format" must be `fmt`; `error`
    (naming the file) otherwise."""
    path = Path(path)
    blob = load_torch_bytes(read_verified(path, what, error, recover, missing_hint), path, what, error)
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise error(f"{path} is not an ems-ray {what} (expected format {fmt})")
    return blob


def copy_artifact(src: str | Path, dst: str | Path, what: str, error: type[Exception], recover: str) -> Path:
    """Copy a verified file and record its digest at the destination."""
    return write_artifact(dst, read_verified(src, what, error, recover))


def remove_artifact(path: str | Path) -> None:
    """Remove a file that a newer result replaces by its absence, and its digest."""
    Path(path).unlink(missing_ok=True)
    digest_path(path).unlink(missing_ok=True)


def update_sha256(h: hashlib._Hash, path: str | Path) -> None:
    """Feed a file's bytes to `h` in 1 MiB blocks (super networks and shards can be large)."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    update_sha256(h, path)
    return h.hexdigest()


def json_digest(obj) -> str:
    """sha256 (16 hex digits) of `obj` as sorted JSON: the fingerprint of settings and inputs."""
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]

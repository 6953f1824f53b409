"""Torch files that later stages read (super network, predictors): written atomically, read with
`weights_only=True`, and checked for their format tag so a wrong or damaged file fails clearly."""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path



def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write `data` to a hidden temporary file beside `path`, fsync, then rename: a reader (or a
    resumed run) sees the old file or the whole new one, never half of it. Hidden names are what
    readers and digests skip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_artifact(path: str | Path, blob: dict) -> Path:
    """`torch.save` to a temporary file, then rename: a killed writer never leaves half a file."""
    import torch

    buffer = io.BytesIO()
    torch.save(blob, buffer)
    return write_atomic(path, buffer.getvalue())


def read_artifact(path: str | Path, fmt: str, what: str, error: type[Exception], missing_hint: str) -> dict:
    """The dict in `path`, whose "format" must be `fmt`; `error` (naming the file) otherwise."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path} ({missing_hint})")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise error(f"cannot read {what} {path}: {exc.__class__.__name__}: {exc}") from exc
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise error(f"{path} is not an ems-ray {what} (expected format {fmt})")
    return blob


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

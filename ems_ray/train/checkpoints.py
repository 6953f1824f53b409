"""Epoch checkpoints on local disk: written atomically, loaded with `weights_only=True`."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ems_ray.errors import InputError

STATE_FILE = "state.pt"


class CorruptCheckpointError(InputError, RuntimeError):
    """A checkpoint exists but cannot be read; nothing is overwritten so it can be inspected."""


def save_state(state: dict, directory: Path) -> Path:
    """Write `state` to `directory/state.pt` via a temporary file, so a kill never leaves half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, directory / STATE_FILE)
    return directory / STATE_FILE


def load_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/garbled files
        raise CorruptCheckpointError(
            f"cannot read checkpoint {path}: {exc.__class__.__name__}: {exc}. "
            "Move it away to resume from the previous epoch, or delete the run directory to start over."
        ) from exc


class LocalSession:
    """Single-process `TrainSession`: checkpoints under `root/epoch-NNNN/`, metrics in JSON lines."""

    rank = 0
    world_size = 1

    def __init__(self, root: Path, device: torch.device | None = None, keep: int = 2):
        self.root = Path(root)
        self.device = device or torch.device("cpu")
        self.keep = keep

    def epochs(self) -> list[Path]:
        done = [p for p in self.root.glob("epoch-*") if (p / STATE_FILE).is_file()]
        return sorted(done)

    def restore(self) -> dict | None:
        saved = self.epochs()
        return load_state(saved[-1] / STATE_FILE) if saved else None

    def report(self, metrics: dict, state: dict | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if state is not None:
            save_state(state, self.root / f"epoch-{state['epoch']:04d}")
            for old in self.epochs()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)

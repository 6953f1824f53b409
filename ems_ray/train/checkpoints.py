"""Epoch checkpoints on local disk: written atomically with their digest (`state.pt.sha256`),
verified and loaded with `weights_only=True`."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import torch

from ems_ray.artifacts import load_torch_bytes, read_verified, write_artifact
from ems_ray.errors import InputError

STATE_FILE = "state.pt"


class CorruptCheckpointError(InputError, RuntimeError):
    """A checkpoint exists but is damaged or cannot be read; nothing is overwritten so it can be inspected."""


RECOVER = "move its epoch folder away to resume from the previous epoch, or delete the run directory to start over"


def save_state(state: dict, directory: Path) -> Path:
    """Write `state` to `directory/state.pt` (and its digest) atomically, so a kill never leaves half a file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_artifact(Path(directory) / STATE_FILE, buffer.getvalue())


def load_state(path: Path) -> dict:
    """A verified checkpoint; CorruptCheckpointError naming it when damaged or unreadable."""
    path = Path(path)
    data = read_verified(path, "checkpoint", CorruptCheckpointError, RECOVER)
    return load_torch_bytes(data, path, "checkpoint", CorruptCheckpointError)


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

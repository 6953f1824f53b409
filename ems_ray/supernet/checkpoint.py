"""The trained super network on disk: weights plus the search space they belong to.

Later stages (collection, final model) load this file; a file trained for another space fails
clearly instead of with a state-dict shape error, and one whose bytes no longer match the digest
recorded beside it (`supernet.pt.sha256`) fails before any weight is used.
"""
from __future__ import annotations

from pathlib import Path

from ems_ray.artifacts import read_artifact, save_artifact
from ems_ray.errors import InputError
from ems_ray.space import SearchSpace, space_fingerprint

SUPERNET_FORMAT = "ems-ray-supernet-v1"


class SupernetFileError(InputError):
    """A super-network file that is missing, damaged, unreadable, or for another search space."""


class NotQuantizationAwareError(SupernetFileError):
    """A stage that needs a quantization-aware super network (trained with a `quantize` phase) got
    one trained in float only."""


RECOVER = ("move it aside and re-run `ems-ray train-supernet` (it writes the file again from the last "
           "epoch's checkpoint when one is left, else retrains)")


def save_supernet(path: Path, space: SearchSpace, state_dict: dict, metadata: dict | None = None) -> Path:
    return save_artifact(path, {
        "format": SUPERNET_FORMAT, "space_name": space.name, "space_yaml": space.to_yaml(),
        "space_fingerprint": space_fingerprint(space), "state_dict": state_dict,
        "metadata": metadata or {},
    })


def read_supernet_file(path: Path) -> dict:
    """The verified contents of a super-network file (SupernetFileError naming it otherwise)."""
    return read_artifact(path, SUPERNET_FORMAT, "super-network checkpoint", SupernetFileError,
                         "run `ems-ray train-supernet` first", RECOVER)


def load_supernet(path: Path, space: SearchSpace | None = None):
    """The trained `ElasticSuperNet` in eval mode; checks it matches `space` when given."""
    return supernet_from_file(read_supernet_file(path), path, space)


def supernet_from_file(blob: dict, path: Path, space: SearchSpace | None = None):
    """The `ElasticSuperNet` of a file's verified contents (`read_supernet_file`), in eval mode."""
    from .network import ElasticSuperNet

    saved = SearchSpace.from_yaml(blob["space_yaml"])
    if space is not None and space_fingerprint(space) != blob["space_fingerprint"]:
        raise SupernetFileError(
            f"{path} was trained for search space '{saved.name}' ({blob['space_fingerprint']}), "
            f"not for '{space.name}' ({space_fingerprint(space)})"
        )
    net = ElasticSuperNet(saved)
    net.load_state_dict(blob["state_dict"])
    return net.eval()


def trained_phases(blob: dict) -> list[dict]:
    """The training phases a super-network file went through, in order: each `{"name", "quantize"}`.

    Recorded in its metadata since quantization-aware training came in; an older file records only
    its last epoch's metrics, whose `phase_index` and `phase` name it (those phases were all float).
    """
    meta = blob.get("metadata") or {}
    if "phases" in meta:
        return [dict(p) for p in meta["phases"]]
    last = meta.get("final") or {}
    if "phase_index" not in last:
        return []
    names = [None] * int(last["phase_index"]) + [last.get("phase")]
    return [{"name": name, "quantize": False} for name in names]


def is_quantization_aware(blob: dict) -> bool:
    """Whether the super network was trained with a `quantize` phase (its sub-nets then run
    quantized without a fine-tune)."""
    return any(p.get("quantize") for p in trained_phases(blob))


def require_quantization_aware(path: Path, blob: dict, why: str) -> None:
    if not is_quantization_aware(blob):
        names = [p["name"] for p in trained_phases(blob)]
        raise NotQuantizationAwareError(
            f"{path}: {why} needs a quantization-aware super network, but this one was trained with "
            f"float phases only ({names}); continue it with a `quantize: true` phase "
            "(supernet.continue_from, docs/supernet.md) or use a fine-tuning recipe")

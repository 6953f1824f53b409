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
    from .network import ElasticSuperNet

    blob = read_supernet_file(path)
    saved = SearchSpace.from_yaml(blob["space_yaml"])
    if space is not None and space_fingerprint(space) != blob["space_fingerprint"]:
        raise SupernetFileError(
            f"{path} was trained for search space '{saved.name}' ({blob['space_fingerprint']}), "
            f"not for '{space.name}' ({space_fingerprint(space)})"
        )
    net = ElasticSuperNet(saved)
    net.load_state_dict(blob["state_dict"])
    return net.eval()

"""The one fingerprint of a search space, shared by every file made for a space (super network,
predictors, LUT, stage fingerprints), so that each refuses a file made for another definition."""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .search_space import SearchSpace


def space_fingerprint(space: SearchSpace) -> str:
    """sha256 (16 hex digits) of the space's canonical YAML: every field, in a stable order."""
    return hashlib.sha256(space.to_yaml().encode()).hexdigest()[:16]

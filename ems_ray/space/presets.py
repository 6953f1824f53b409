"""Named search-space presets, shipped as YAML beside this module."""
from __future__ import annotations

from pathlib import Path

from ems_ray.errors import InputError

from .search_space import SearchSpace

PRESET_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> SearchSpace:
    """The preset called `name`; a clear error lists the known presets."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise InputError(f"unknown search-space preset '{name}'; allowed values: {preset_names()}")
    return SearchSpace.from_yaml(path)


def resolve_space(spec: str | Path | SearchSpace) -> SearchSpace:
    """A space from a preset name, a YAML file path, or a space object."""
    if isinstance(spec, SearchSpace):
        return spec
    if Path(spec).suffix in (".yaml", ".yml"):
        if not Path(spec).is_file():
            raise FileNotFoundError(f"search-space file not found: {spec}")
        return SearchSpace.from_yaml(spec)
    return load_preset(str(spec))

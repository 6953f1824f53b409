"""YAML round trips for the pydantic models users keep as files (spaces, sub-net configs)."""
from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel

M = TypeVar("M", bound="YamlModel")


def read_yaml_source(source: str | Path):
    """Parse a YAML file path, or YAML text (any string containing a newline)."""
    text = source if isinstance(source, str) and "\n" in source else Path(source).read_text()
    return yaml.safe_load(text)


class YamlModel(BaseModel):
    """A pydantic model that writes itself as YAML and validates when read back."""

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls: type[M], source: str | Path) -> M:
        return cls.model_validate(read_yaml_source(source))

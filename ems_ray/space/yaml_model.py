"""YAML round trips for the pydantic models users keep as files (spaces, sub-net configs).

A file that is missing, unreadable, not YAML or not the model is a `YamlFileError` naming the
file and, for YAML, the line: what the user wrote is wrong, so one line, no traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ems_ray.errors import InputError, validation_problems

M = TypeVar("M", bound="YamlModel")


class YamlFileError(InputError):
    """A YAML file (or text) that cannot be read, parsed or validated; names the source."""


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line: what is wrong and where (`expected ',' or ']' at line 2, column 1`)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def read_yaml_text(text: str, where: str) -> Any:
    """Parsed YAML; malformed text is a `YamlFileError` that names `where` and the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{where}: not valid YAML: {yaml_problem(exc)}") from None


def read_yaml_file(path: str | Path, what: str = "YAML file") -> Any:
    """Parsed YAML of the file `path`; missing, unreadable or malformed is a `YamlFileError`."""
    path = Path(path)
    if not path.is_file():
        raise YamlFileError(f"{what} not found: {path}" + (" (a folder, not a file)" if path.is_dir() else ""))
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"{path}: cannot read the {what}: {exc}") from None
    return read_yaml_text(text, str(path))


def read_yaml_source(source: str | Path, what: str = "YAML file") -> tuple[Any, str]:
    """Parse a YAML file path, or YAML text (any string containing a newline); returns the data and
    how to name its source in an error."""
    if isinstance(source, str) and "\n" in source:
        return read_yaml_text(source, f"{what} (YAML text)"), f"{what} (YAML text)"
    return read_yaml_file(source, what), str(source)


class YamlModel(BaseModel):
    """A pydantic model that writes itself as YAML and validates when read back."""

    file_kind: ClassVar[str] = "YAML file"  # how errors name a file of this model

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls: type[M], source: str | Path) -> M:
        """Load and validate; every problem is a one-line `YamlFileError` naming the source."""
        data, where = read_yaml_source(source, cls.file_kind)
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise YamlFileError(f"{where}: invalid {cls.file_kind}: " + "; ".join(validation_problems(err))) from None

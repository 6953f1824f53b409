"""Package namespaces whose names load on first use (PEP 562).

A stage package's `__init__` lists its public names by module; nothing is imported until a name is
used. So `import ems_ray.collect.config` (the run config reads every stage's config model) does not
load the package's torch- and Ray-backed modules, and loading a config stays fast.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """`(__getattr__, __dir__, __all__)` for `package`, whose `exports` map a relative module
    ('.stage') to the names it provides."""
    if any(isinstance(names, str) for names in exports.values()):
        raise TypeError(f"{package}: lazy_exports takes a tuple of names per module, not a string")
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, sorted(where)

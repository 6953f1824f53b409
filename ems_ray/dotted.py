"""Dotted-key assignment into nested config data (`supernet.phases.0.epochs=1`), done one way for
`--set`, config overrides and the predictor's Tune search space."""
from __future__ import annotations

from typing import Any

from ems_ray.errors import InputError


def set_dotted(tree: dict, key: str, value: Any, *, create: bool = True) -> None:
    """Set `tree[a][b]...[leaf] = value` for `key` 'a.b...leaf' in place; list items by index.

    Missing mappings on the way are created when `create`, else the key is unknown. A part that
    cannot hold the next one (a number, a string, an index past a list's end) is an `InputError`
    naming the key, so a bad override never ends in a traceback."""
    parts = key.split(".")
    if not all(parts):
        raise InputError(f"{key}: empty part in a dotted key")
    node: Any = tree
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[:depth]) or "the top level"
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise InputError(f"{key}: {where} is a list of {len(node)}; '{part}' is not an index of it")
            index = int(part)
            if last:
                node[index] = value
                return
            node = node[index]
        elif isinstance(node, dict):
            if last:
                if not create and part not in node:
                    raise InputError(f"{key}: unknown setting")
                node[part] = value
                return
            if part not in node or node[part] is None:
                if not create:
                    raise InputError(f"{key}: unknown setting")
                node[part] = {}
            node = node[part]
        else:
            raise InputError(f"{key}: {where} is {node!r}, which has no '{part}'")

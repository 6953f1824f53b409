"""What every job script shares: make this checkout's `ems_ray` importable, then run one `ems-ray`
sub-command with the script's own arguments.

`ray job submit --working-dir . -- python jobs/<stage>.py ...` runs the script from a copy of the
working directory that Ray unpacks on the head node. Ray puts that copy on PYTHONPATH, but a plain
`python jobs/<stage>.py` only puts `jobs/` on `sys.path`; inserting the checkout's root first in
both cases makes the job run the code that was submitted, not an older installed `ems_ray`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent


def ensure_importable(root: Path = REPO_ROOT) -> None:
    """Put `root` (the folder holding `ems_ray/`) first on `sys.path`, once."""
    if (root / "ems_ray").is_dir() and str(root) not in sys.path[:1]:
        sys.path.insert(0, str(root))


def run_cli(command: Sequence[str], argv: Sequence[str] | None = None) -> NoReturn:
    """Exit with `ems-ray <command> <argv>` (default: this script's arguments)."""
    ensure_importable()
    from ems_ray.cli import main

    sys.exit(main([*command, *(sys.argv[1:] if argv is None else argv)]))

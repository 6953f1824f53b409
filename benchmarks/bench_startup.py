"""Start-up cost of the light paths: importing the run config, loading and validating one, and
`ems-ray --help` (issue 16: under 0.3 s and 0.5 s), each in a fresh interpreter, with which heavy
packages each one loaded.

    python benchmarks/bench_startup.py [--runs 5] [--config configs/fmnist-full.yaml]

Prints the median and minimum wall seconds and the median CPU seconds (user + system) of each. On
a shared machine the wall time follows the load; CPU time follows it much less.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _tables import print_table

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "numpy", "pyarrow", "pydantic", "yaml")


def cases(config: str) -> dict[str, str]:
    return {
        "python -c pass": "pass",
        "import ems_ray.config": "import ems_ray.config",
        f"load_run_config('{config}')": f"from ems_ray.config import load_run_config; "
                                        f"load_run_config({config!r}).search_space()",
        "ems-ray --help": "import sys; sys.argv = ['ems-ray', '--help']; from ems_ray.cli import main; main()",
    }


def measure(code: str, runs: int) -> tuple[list[float], list[float], str]:
    """(wall seconds, CPU seconds, heavy packages loaded) of `python -c code`, `runs` times."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    probe = (f"import sys, contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n"
             f"    try:\n        exec({code!r})\n    except SystemExit:\n        pass\n"
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules) or '-')")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            check=True).stdout.strip()
    return walls, cpus, loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--config", default="configs/fmnist-full.yaml")
    args = parser.parse_args()
    rows = []
    for name, code in cases(args.config).items():
        walls, cpus, loaded = measure(code, args.runs)
        rows.append((name, f"{statistics.median(walls):.3f}", f"{min(walls):.3f}", f"{statistics.median(cpus):.3f}",
                     loaded))
    print_table(f"start-up, {args.runs} runs each, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
                ("what", "wall median s", "wall min s", "CPU median s", "loaded"), rows)


if __name__ == "__main__":
    main()

"""Ray job: evolution, TPE, NSGA-II and random search compared at equal scored candidates (Tune).

    ray job submit --working-dir . -- python jobs/compare_searchers.py --config configs/fmnist-quick.yaml

Arguments are those of `ems-ray compare-searchers` (see `ems-ray compare-searchers --help`).
"""
from _entrypoint import run_cli

if __name__ == "__main__":
    run_cli(["compare-searchers"])

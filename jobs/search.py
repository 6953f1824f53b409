"""Ray job: the hardware-aware search for one budget.

    ray job submit --working-dir . -- python jobs/search.py --config configs/fmnist-quick.yaml \
        --budget latency=0.5ms

Arguments are those of `ems-ray search` (see `ems-ray search --help`).
"""
from _entrypoint import run_cli

if __name__ == "__main__":
    run_cli(["search"])

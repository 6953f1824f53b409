"""Ray job: quantize, fine-tune and export one searched sub-net.

    ray job submit --working-dir . -- python jobs/export.py --config configs/fmnist-quick.yaml \
        --subnet runs/fmnist-quick/search/<budget>/best.yaml

Arguments are those of `ems-ray export` (see `ems-ray export --help`).
"""
from _entrypoint import run_cli

if __name__ == "__main__":
    run_cli(["export"])

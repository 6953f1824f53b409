"""Ray job: FP or quantized accuracy collection (first argument: fp or quant).

    ray job submit --working-dir . -- python jobs/collect.py fp --config configs/fmnist-quick.yaml

Arguments are those of `ems-ray collect` (see `ems-ray collect --help`).
"""
from _entrypoint import run_cli

if __name__ == "__main__":
    run_cli(["collect"])

"""Ray job: progressive-shrinking super-network training on Ray Train.

    ray job submit --working-dir . -- python jobs/train_supernet.py --config configs/fmnist-quick.yaml

Arguments are those of `ems-ray train-supernet` (see `ems-ray train-supernet --help`).
"""
from _entrypoint import run_cli

if __name__ == "__main__":
    run_cli(["train-supernet"])

"""Ray job: the FP and quantization-aware accuracy predictors.

    ray job submit --working-dir . -- python jobs/train_predictor.py --config configs/fmnist-quick.yaml

Arguments are those of `ems-ray train-predictor` (see `ems-ray train-predictor --help`).
"""
from _entrypoint import run_cli

if __name__ == "__main__":
    run_cli(["train-predictor"])

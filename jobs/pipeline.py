"""Ray job: the whole pipeline (every stage; finished stages are skipped).

    ray job submit --working-dir . -- python jobs/pipeline.py --config configs/fmnist-quick.yaml

Arguments are those of `ems-ray pipeline` (see `ems-ray pipeline --help`).
"""
from _entrypoint import run_cli

if __name__ == "__main__":
    run_cli(["pipeline"])

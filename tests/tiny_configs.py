"""Tiny configs shared by tests: seconds of CPU, not minutes."""
from __future__ import annotations

from ems_ray.data import DataConfig
from ems_ray.space import load_preset
from ems_ray.train import LoopInputs, SupernetTrainConfig

SPACE = load_preset("fmnist-small")


def tiny_inputs(log=lambda s: None) -> LoopInputs:
    data = DataConfig(batch_size=32, eval_batch_size=64, train_subset=256, val_subset=128)
    train = SupernetTrainConfig(
        steps_per_epoch=3, eval={"random_subnets": 1, "bn_batches": 1, "val_batches": 1},
        phases=[
            {"name": "full", "epochs": 1, "lr": 0.05, "kernels": "max", "depth_levels": 1,
             "width_fraction": 0, "distill": False},
            {"name": "kernel", "epochs": 1, "lr": 0.02, "kernels": "all", "depth_levels": 1, "width_fraction": 0},
            {"name": "width", "epochs": 1, "lr": 0.02, "width_fraction": 1.0, "sort_channels": True,
             "subnets_per_step": 2},
        ],
    )
    return LoopInputs(space=SPACE, data=data, train=train, seed=3, log=log)


def tiny_predictor_run(root, search: str, hidden: int = 16, layers: int = 2):
    """A run folder under `root` holding only untrained FP and quant predictors of `SPACE`, and its
    run config `root/run.yaml` with the `search:` section `search` (YAML flow text); returns the config path."""
    import torch

    from ems_ray.predictor import AccuracyPredictor, MLPPredictor
    from ems_ray.space import Encoding

    enc = Encoding(SPACE)
    torch.manual_seed(0)
    for kind, quant_dim in (("fp", 0), ("quant", enc.quant_dim)):
        AccuracyPredictor(MLPPredictor(enc.fp_dim, quant_dim, hidden=hidden, layers=layers), SPACE, kind).save(
            root / "run" / "predictor" / f"{kind}.pt")
    path = root / "run.yaml"
    path.write_text(f"name: t\nrun_dir: {root / 'run'}\n"
                    "supernet: {phases: [{name: full, epochs: 1, lr: 0.1, distill: false}]}\n"
                    f"search: {search}\n")
    return path

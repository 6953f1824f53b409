"""What the quality benchmarks share: a run config with its trained super network and data splits."""
from __future__ import annotations

from pathlib import Path

import torch

from ems_ray.config import RunConfig, load_run_config
from ems_ray.data import Splits, build_splits
from ems_ray.supernet import ElasticSuperNet
from ems_ray.supernet.checkpoint import load_supernet


def load_trained_run(config: str | Path, threads: int = 2) -> tuple[RunConfig, ElasticSuperNet, Splits]:
    torch.set_num_threads(threads)
    cfg = load_run_config(config)
    net = load_supernet(Path(cfg.run_dir) / "supernet" / "supernet.pt", cfg.search_space())
    return cfg, net, build_splits(cfg.data)

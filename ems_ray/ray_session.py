"""Connect to a Ray cluster, or start a local one sized by the config, and shut down what we start."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from ems_ray.config import RayConfig


@contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Reuse an initialised Ray, else `ray.init` (local: explicit CPUs, dashboard on localhost)."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=cfg.include_dashboard,
                 dashboard_host=cfg.dashboard_host)
    try:
        yield
    finally:
        ray.shutdown()

"""Shared fixtures: one local Ray session for every test that needs Ray, shut down at the end."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@pytest.fixture(scope="session")
def ray_local():
    """A 2-CPU local Ray on loopback (as the pipeline starts it), started once and shut down
    after the last test."""
    import ray

    from ems_ray.ray_session import local_ray

    if ray.is_initialized():
        yield ray
        return
    with local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False):
        yield ray


@pytest.fixture(scope="session")
def scorer():
    """fmnist-small candidates scored by the synthetic predictor and the real LUT (search tests;
    a test module may define its own)."""
    from ems_ray.hardware import build_lut
    from ems_ray.search import CandidateScorer, SyntheticPredictor
    from ems_ray.space import load_preset

    space = load_preset("fmnist-small")
    return CandidateScorer(SyntheticPredictor(space), build_lut(space))


@pytest.fixture(scope="session")
def budget(scorer):
    """A latency budget that 30% of random fmnist-small sub-nets meet, rounded so that
    `--budget latency=...` on a command line is the same budget."""
    import numpy as np

    from ems_ray.search import Budget
    from ems_ray.space import Genome

    genes = Genome(scorer.space).sample(np.random.default_rng(0), 400)
    lat = scorer.costs(genes)["latency_ms"]
    return Budget.parse(f"latency={np.quantile(lat, 0.3):.3f}ms")

"""Progressive shrinking under Ray Train: 2 DDP workers, a killed worker, and resume."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from ems_ray.config import RayConfig, RunConfig
from ems_ray.supernet.checkpoint import load_supernet
from ems_ray.train import run_supernet_stage

from tiny_configs import tiny_inputs

pytestmark = pytest.mark.ray


class KillOnce:
    """Log sink (to a file) that kills its worker the first time it sees a given epoch finish."""

    def __init__(self, marker: Path, epoch: int):
        self.marker, self.epoch = marker, epoch
        self.log = marker.with_suffix(".log")

    def __call__(self, line: str) -> None:
        with open(self.log, "a") as f:
            f.write(line + "\n")
        if f"epoch {self.epoch}/" in line and not self.marker.exists():
            self.marker.write_text("killed")
            os._exit(1)


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_two_workers_survive_a_killed_worker_and_resume(ray_local, tmp_path, monkeypatch):
    base = tiny_inputs()
    cfg = RunConfig(
        name="tiny", run_dir=tmp_path / "run", seed=base.seed, space="fmnist-small", data=base.data,
        supernet=base.train.model_copy(update={"workers": 2, "cpus_per_worker": 1, "max_failures": 2}),
        ray=RayConfig(num_cpus=2),
    )
    marker = tmp_path / "killed"
    # workers cannot import this test module: ship KillOnce by value
    ray_local.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # the kill happens in a Ray worker: the log sink travels with the loop inputs
    import ems_ray.train.stage as stage

    real = stage.LoopInputs
    monkeypatch.setattr(stage, "LoopInputs", lambda **kw: real(**kw, log=KillOnce(marker, 2)))
    path = run_supernet_stage(cfg.context(), cfg.supernet, use_ray=True)
    assert marker.exists(), "the worker was never killed"
    # the restarted worker group resumed from the epoch-1 checkpoint instead of starting over
    log = marker.with_suffix(".log").read_text()
    assert "resumed after epoch 1 of 3" in log
    assert log.count("epoch 1/3 full |") == 1  # epoch 1 ran once; epoch 2 ran again after the kill
    assert log.count("epoch 2/3 kernel: 33%") == 2
    net = load_supernet(path, cfg.search_space())
    history = json.loads((tmp_path / "run" / "supernet" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert net is not None

    # a run folder without Ray's own state (e.g. copied to a fresh machine) resumes from the
    # mirrored checkpoints instead of starting over
    out = tmp_path / "run" / "supernet"
    assert (out / "checkpoints" / "epoch-0002" / "state.pt").is_file()
    shutil.rmtree(out / "ray")
    shutil.rmtree(out / "checkpoints" / "epoch-0002")
    path.unlink()
    run_supernet_stage(cfg.context(), cfg.supernet, use_ray=True)
    assert "resumed after epoch 2 of 3" in marker.with_suffix(".log").read_text()
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [0, 1, 2]


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_quant_phase_on_two_workers_survives_a_killed_worker(ray_local, tmp_path, monkeypatch):
    """A float super network continued with a `quantize` phase under Ray Train (2 DDP workers):
    the worker killed in the quant epoch is restarted from the last checkpoint, and the file says
    it is quantization-aware."""
    from ems_ray.supernet.checkpoint import is_quantization_aware, read_supernet_file
    from ems_ray.train import PhaseConfig

    base = tiny_inputs()
    common = dict(name="tiny", seed=base.seed, space="fmnist-small", data=base.data, ray=RayConfig(num_cpus=2))
    float_cfg = RunConfig(run_dir=tmp_path / "float", supernet=base.train, **common)
    float_file = run_supernet_stage(float_cfg.context(), float_cfg.supernet, use_ray=False)
    quant = PhaseConfig(name="quant", epochs=2, lr=0.01, subnets_per_step=2, quantize=True, float_subnets=1)
    cfg = RunConfig(run_dir=tmp_path / "qa", **common, supernet=base.train.model_copy(update={
        "phases": [*base.train.phases, quant], "continue_from": str(float_file),
        "workers": 2, "cpus_per_worker": 1, "max_failures": 2}))
    marker = tmp_path / "killed"
    ray_local.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    import ems_ray.train.stage as stage

    real = stage.LoopInputs
    monkeypatch.setattr(stage, "LoopInputs", lambda **kw: real(**kw, log=KillOnce(marker, 5)))
    path = run_supernet_stage(cfg.context(), cfg.supernet, use_ray=True)
    log = marker.with_suffix(".log").read_text()
    assert marker.exists() and "resumed after epoch 4 of 5" in log
    assert log.count("epoch 4/5 quant |") == 1
    history = json.loads((tmp_path / "qa" / "supernet" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [3, 4]
    assert all("val_qacc_largest_low" in h for h in history)
    assert is_quantization_aware(read_supernet_file(path))

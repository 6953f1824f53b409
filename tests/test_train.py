"""Progressive shrinking: phase bounds, schedule, and the pure loop with checkpoint/resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ems_ray.space import Genome, load_preset
from ems_ray.space.genome import KERNEL, MID
from ems_ray.train import PhaseConfig, SupernetTrainConfig, train_supernet
from ems_ray.train.checkpoints import CorruptCheckpointError, LocalSession
from ems_ray.train.config import cosine_lr
from tiny_configs import tiny_inputs

SPACE = load_preset("fmnist-small")
GENOME = Genome(SPACE)


def _phase(**kw) -> PhaseConfig:
    return PhaseConfig(**{"name": "p", "epochs": 1, "lr": 0.1, **kw})


def test_full_phase_samples_only_the_largest():
    rows = _phase(kernels="max", depth_levels=1, width_fraction=0).sample(GENOME, np.random.default_rng(0), 50)
    canon = GENOME.canonical(rows)
    largest = GENOME.canonical(GENOME.largest())
    fp_cols = np.r_[: GENOME.n_stages, GENOME.slot_columns(KERNEL), GENOME.slot_columns(MID)]
    assert (canon[:, fp_cols] == largest[:, fp_cols]).all()


def test_width_phase_bounds():
    rows = _phase(width_fraction=0.5).sample(GENOME, np.random.default_rng(0), 2000)
    mids = rows[:, GENOME.slot_columns(MID)]
    counts = GENOME.choice_counts[GENOME.slot_columns(MID)]
    low = counts - np.ceil(0.5 * counts)
    assert (mids >= low).all() and (mids < counts).all()
    assert (mids.min(axis=0) == low).all()  # the bound itself is reachable
    kernels = rows[:, GENOME.slot_columns(KERNEL)]
    assert set(np.unique(kernels)) == {0, 1, 2}


def test_cosine_schedule():
    p = _phase(epochs=4, lr=0.2, warmup_epochs=1)
    assert cosine_lr(p, 0.0) < 0.01 and cosine_lr(p, 1.0) == pytest.approx(0.2)
    assert cosine_lr(p, 2.5) == pytest.approx(0.1) and cosine_lr(p, 4.0) == pytest.approx(0.0, abs=1e-9)


def test_schedule_validation():
    with pytest.raises(ValidationError, match="distill: false"):
        SupernetTrainConfig(phases=[_phase()])
    with pytest.raises(ValidationError, match="unique"):
        SupernetTrainConfig(phases=[_phase(distill=False), _phase()])
    with pytest.raises(ValidationError, match="kernels"):
        _phase(kernels="some")
    cfg = SupernetTrainConfig(phases=[_phase(distill=False, epochs=2), _phase(name="q", epochs=3)])
    assert cfg.total_epochs == 5 and cfg.locate(0) == (0, 0) and cfg.locate(3) == (1, 1)


class _Killed(Exception):
    pass


class KillingSession(LocalSession):
    """Dies (raises) right after writing the checkpoint of epoch `kill_after`."""

    def __init__(self, root, kill_after: int):
        super().__init__(root)
        self.kill_after = kill_after

    def report(self, metrics, state):
        super().report(metrics, state)
        if metrics["epoch"] == self.kill_after:
            raise _Killed


def test_loop_trains_and_resumes_identically(tmp_path):
    full = train_supernet(tiny_inputs(), LocalSession(tmp_path / "a"))
    assert [h["phase"] for h in full["history"]] == ["full", "kernel", "width"]
    for h in full["history"]:
        assert 0 <= h["val_acc_smallest"] <= 1 and np.isfinite(h["train_loss"])

    with pytest.raises(_Killed):
        train_supernet(tiny_inputs(), KillingSession(tmp_path / "b", kill_after=1))
    lines = []
    resumed = train_supernet(tiny_inputs(lines.append), LocalSession(tmp_path / "b"))
    assert any("resumed after epoch 2" in s for s in lines)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2]
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_corrupt_checkpoint_is_reported_not_overwritten(tmp_path):
    root = tmp_path / "run"
    (root / "epoch-0000").mkdir(parents=True)
    (root / "epoch-0000" / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptCheckpointError, match="epoch-0000"):
        train_supernet(tiny_inputs(), LocalSession(root))
    assert (root / "epoch-0000" / "state.pt").read_bytes() == b"not a checkpoint"


def test_kernel_transforms_and_1d_parameters_are_not_weight_decayed():
    """The super network declares its kernel-transform matrices (`no_weight_decay`); the optimizer
    decays only conv and linear weights."""
    from ems_ray.supernet import ElasticSuperNet
    from ems_ray.train.config import SupernetTrainConfig
    from ems_ray.train.progressive import _optimizer

    net = ElasticSuperNet("fmnist-small")
    declared = net.no_weight_decay()
    assert declared and all(".dw.transforms." in name for name in declared)
    cfg = SupernetTrainConfig.model_validate({"phases": [{"name": "full", "epochs": 1, "lr": 0.1, "distill": False}]})
    decayed, free = _optimizer(net, cfg, 0.1).param_groups
    assert decayed["weight_decay"] == cfg.weight_decay > 0 and free["weight_decay"] == 0.0
    params = dict(net.named_parameters())
    free_ids = {id(p) for p in free["params"]}
    assert all(id(params[name]) in free_ids for name in declared)
    assert all(p.ndim == 4 or p.ndim == 2 for p in decayed["params"])  # conv and linear weights only
    assert any(p.ndim == 4 for p in decayed["params"])

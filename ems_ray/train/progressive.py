"""Progressive shrinking (once-for-all, paper section 3.1) as a plain PyTorch loop.

The loop knows nothing about Ray: a `TrainSession` tells it its rank and world size, restores
the last checkpoint and receives each epoch's metrics and state. `local.py` runs it in-process;
`ray_trainer.py` runs it on Ray Train workers. Phase 0 trains the full network, which then becomes
the frozen distillation teacher for every later phase. A run may continue a trained super network
with further phases (`LoopInputs.initial`): the teacher is then that network's largest sub-net.
A `quantize` phase trains sub-nets fake-quantized at sampled bit policies (docs/supernet.md).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ems_ray.console import ensure_logging
from ems_ray.data import build_splits, make_loader
from ems_ray.errors import InputError
from ems_ray.space import Genome, SearchSpace
from ems_ray.supernet import ElasticSuperNet, evaluate, recalibrate_bn

from .config import PhaseConfig, SupernetTrainConfig, cosine_lr

STATE_FORMAT = "ems-ray-ps-state-v1"


class TrainSession(Protocol):
    """What the loop needs from whoever runs it (in-process, or a Ray Train worker)."""

    rank: int
    world_size: int
    device: torch.device

    def restore(self) -> dict | None: ...

    def report(self, metrics: dict, state: dict | None) -> None:
        """Called by every rank once per epoch; `state` (rank 0 only) is the checkpoint."""


logger = logging.getLogger(__name__)


def log_line(message: str) -> None:
    """The default log: this module's logger. Not `print`: in a Ray Train worker, Ray patches
    `builtins.print` to both print and log to the root logger, so every line reached the driver
    twice. A logging call goes through Ray Train's root handlers once (and into its log files)."""
    logger.info(message)


@dataclass
class InitialWeights:
    """A trained super network's weights, and the number of leading phases they already went through."""

    state_dict: dict
    phases_done: int


@dataclass
class LoopInputs:
    """Everything the training loop is parameterised by (picklable, sent to Ray workers)."""

    space: SearchSpace
    data: Any  # ems_ray.data.DataConfig
    train: SupernetTrainConfig
    seed: int = 0
    log: Callable[[str], None] = field(default=log_line)
    verbosity: int = 0  # the driver's -q/-v, applied in each worker
    # Continue a trained super network: its weights and how many of `train.phases` it was trained with.
    initial: InitialWeights | None = None


class SubnetStep(nn.Module):
    """One optimisation step's forward: every sampled sub-net on the same batch, losses summed.

    Running all sub-nets inside a single forward lets DDP all-reduce once per step even though
    each sub-net touches a different subset of the super network's parameters.
    """

    def __init__(self, supernet: ElasticSuperNet, label_smoothing: float, kd_ratio: float):
        super().__init__()
        self.supernet = supernet
        self.label_smoothing = label_smoothing
        self.kd_ratio = kd_ratio

    def forward(self, x: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None, rows: np.ndarray,
                quantized: list[bool]):
        total = x.new_zeros(())
        for row, quant in zip(rows, quantized):
            self.supernet.set_active(row, quantized=quant)
            logits = self.supernet(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            if soft is not None and self.kd_ratio > 0:
                kd = torch.sum(-soft * F.log_softmax(logits, dim=1), dim=1).mean()
                loss = loss + self.kd_ratio * kd
            total = total + loss
        return total / len(rows)


def eval_subnets(space: SearchSpace, seed: int, n_random: int) -> dict[str, np.ndarray]:
    """The fixed sub-nets validated every epoch: largest, smallest and n seeded random ones."""
    g = Genome(space)
    nets = {"largest": g.largest()[0], "smallest": g.smallest()[0]}
    for i, row in enumerate(g.sample(np.random.default_rng([seed, 7919]), n_random)):
        nets[f"random{i}"] = row
    return nets


def quantized_eval_subnets(space: SearchSpace, nets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sub-nets validated quantized in a `quantize` phase: the random ones at their own bit
    policies, the largest and the smallest at the lowest bits (W4A4 on most spaces)."""
    g = Genome(space)
    lowest = max(min(choices) for choices in space.bits.as_tuple())
    out = {name: row for name, row in nets.items() if name.startswith("random")}
    try:
        out.update(largest_low=g.largest(bits=lowest)[0], smallest_low=g.smallest(bits=lowest)[0])
    except InputError:  # bit fields without a common lowest choice: the random policies only
        pass
    return out


def validate(supernet: ElasticSuperNet, nets: dict[str, np.ndarray], bn_loader, val_loader,
             bn_batches: int, val_batches: int | None, device: torch.device,
             quantized: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Accuracy of each named sub-net, extracted and batch-norm-recalibrated (no retraining);
    with `quantized`, also those sub-nets at their bit policies, max-calibrated (no fine-tune)."""
    genome = Genome(supernet.space)
    out = {}
    for name, row in nets.items():
        sub = supernet.extract(genome.to_config(row)).to(device)
        recalibrate_bn(sub, bn_loader, bn_batches)
        acc, _ = evaluate(sub, val_loader, max_batches=val_batches)
        out[f"val_acc_{name}"] = acc
    if quantized:
        from ems_ray.quant import QuantPolicy, apply_policy, calibrate, evaluate_quantized

        for name, row in quantized.items():
            cfg = genome.to_config(row)
            qnet = apply_policy(supernet.extract(cfg).to(device), QuantPolicy.from_subnet(cfg, supernet.space),
                                weight_method="max")
            calibrate(qnet, bn_loader, 2, method="max")
            out[f"val_qacc_{name}"], _ = evaluate_quantized(qnet, bn_loader, val_loader, bn_batches, val_batches)
    rand = [v for k, v in out.items() if k.startswith("val_acc_random")]
    if rand:
        out["val_acc_random_mean"] = float(np.mean(rand))
        out["val_acc_random_spread"] = float(np.max(rand) - np.min(rand))
    return out


def _optimizer(model: nn.Module, cfg: SupernetTrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD with weight decay on the conv and linear weights only: not on BN scales and biases (1-d),
    nor on what the model declares in `no_weight_decay()` (timm's convention)."""
    declared = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name in declared else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def _wrap_ddp(module: nn.Module, session: TrainSession) -> nn.Module:
    if session.world_size <= 1:
        return module
    device_ids = [session.device.index] if session.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)


def train_supernet(inputs: LoopInputs, session: TrainSession) -> dict:
    """Run (or resume) the whole progressive-shrinking schedule; returns the final state."""
    ensure_logging(inputs.verbosity)
    cfg, space, device = inputs.train, inputs.space, session.device
    if cfg.threads_per_worker:
        torch.set_num_threads(cfg.threads_per_worker)
    torch.manual_seed(inputs.seed)
    genome = Genome(space)
    splits = build_splits(inputs.data)
    supernet = ElasticSuperNet(space).to(device)
    if cfg.channels_last:
        supernet = supernet.to(memory_format=torch.channels_last)
    teacher: ElasticSuperNet | None = None
    history: list[dict] = []
    start_epoch = 0

    state = session.restore()
    if state is not None:
        if state.get("format") != STATE_FORMAT:
            raise InputError(f"checkpoint format {state.get('format')!r} is not {STATE_FORMAT!r}")
        supernet.load_state_dict(state["model"])
        if state.get("teacher") is not None:
            teacher = _frozen_teacher(supernet, state["teacher"])
        history = list(state["history"])
        start_epoch = int(state["epoch"]) + 1
        torch.set_rng_state(state["torch_rng"])
        inputs.log(f"[train] resumed after epoch {start_epoch} of {cfg.total_epochs}")
    elif inputs.initial is not None:
        supernet.load_state_dict(inputs.initial.state_dict)
        start_epoch = sum(p.epochs for p in cfg.phases[:inputs.initial.phases_done])
        inputs.log(f"[train] continuing a super network trained with {inputs.initial.phases_done} phase(s): "
                   f"starting at epoch {start_epoch + 1} of {cfg.total_epochs} "
                   f"('{cfg.phases[inputs.initial.phases_done].name}')")

    step = SubnetStep(supernet, cfg.label_smoothing, cfg.kd_ratio)
    model = _wrap_ddp(step, session)
    optimizer = _optimizer(supernet, cfg, cfg.phases[0].lr)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    nets = eval_subnets(space, inputs.seed, cfg.eval.random_subnets)
    bn_loader = make_loader(splits.train, batch_size=inputs.data.eval_batch_size, shuffle=False, seed=inputs.seed)
    val_loader = make_loader(splits.val, batch_size=inputs.data.eval_batch_size, shuffle=False, seed=inputs.seed)

    for epoch in range(start_epoch, cfg.total_epochs):
        p_idx, p_epoch = cfg.locate(epoch)
        phase = cfg.phases[p_idx]
        if p_epoch == 0:
            if phase.distill and teacher is None:
                teacher = _frozen_teacher(supernet, supernet.state_dict())
            if phase.sort_channels:
                supernet.sort_channels()
            # a new phase starts with a fresh momentum buffer at its own learning rate
            optimizer = _optimizer(supernet, cfg, phase.lr)
        metrics = _train_epoch(model, supernet, teacher if phase.distill else None, optimizer, phase,
                               p_epoch, epoch, genome, splits.train, inputs, session)
        metrics.update(phase=phase.name, phase_index=p_idx, epoch=epoch, phase_epoch=p_epoch)
        if session.rank == 0:
            t0 = time.perf_counter()
            metrics.update(validate(supernet, nets, bn_loader, val_loader, cfg.eval.bn_batches,
                                    cfg.eval.val_batches, device,
                                    quantized_eval_subnets(space, nets) if phase.quantize else None))
            metrics["eval_seconds"] = time.perf_counter() - t0
            history.append(metrics)
            inputs.log(_epoch_line(metrics, cfg.total_epochs))
        state = None
        if session.rank == 0:
            state = {
                "format": STATE_FORMAT, "space": space.name, "epoch": epoch,
                "model": supernet.state_dict(), "optimizer": optimizer.state_dict(),
                "teacher": teacher.state_dict() if teacher is not None else None,
                "history": history, "torch_rng": torch.get_rng_state(),
            }
        session.report(metrics, state)
    return {"model": supernet.state_dict(), "history": history}


def _frozen_teacher(like: ElasticSuperNet, weights: dict) -> ElasticSuperNet:
    teacher = copy.deepcopy(like)
    teacher.load_state_dict(weights)
    teacher.set_active(Genome(teacher.space).largest()[0])
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _train_epoch(model, supernet, teacher, optimizer, phase: PhaseConfig, p_epoch: int, epoch: int,
                 genome: Genome, train_set, inputs: LoopInputs, session: TrainSession) -> dict:
    cfg, device = inputs.train, session.device
    sampler = None
    if session.world_size > 1:
        sampler = torch.utils.data.DistributedSampler(
            train_set, num_replicas=session.world_size, rank=session.rank, shuffle=True, seed=inputs.seed)
        sampler.set_epoch(epoch)
    loader = make_loader(train_set, batch_size=inputs.data.batch_size, shuffle=sampler is None,
                         seed=inputs.seed + epoch, sampler=sampler)
    n_steps = len(loader) if cfg.steps_per_epoch is None else min(len(loader), cfg.steps_per_epoch)
    supernet.train()
    quarters = {n_steps * q // 4 for q in (1, 2, 3)} - {0}  # progress lines within a long epoch
    loss_sum, seen, t0 = 0.0, 0, time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i >= n_steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(phase, p_epoch + i / n_steps)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        soft = None
        if teacher is not None:
            with torch.no_grad():
                soft = F.softmax(teacher(x), dim=1)
        # identical seeds on every rank: all workers train the same sub-nets this step
        rows = phase.sample(genome, np.random.default_rng([inputs.seed, epoch, i]), phase.subnets_per_step)
        loss = model(x, y, soft, rows, phase.quantized_mask())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(x)
        seen += len(x)
        if session.rank == 0 and (i + 1) in quarters:
            rate = seen * session.world_size / (time.perf_counter() - t0)
            inputs.log(f"[train] epoch {epoch + 1}/{cfg.total_epochs} {phase.name}: {100 * (i + 1) // n_steps}% "
                       f"loss {loss_sum / seen:.3f} {rate:.0f} img/s")
    elapsed = time.perf_counter() - t0
    return {"train_loss": loss_sum / max(seen, 1), "train_images_per_s": seen * session.world_size / elapsed,
            "train_seconds": elapsed, "lr_end": optimizer.param_groups[0]["lr"]}


def _epoch_line(m: dict, total: int) -> str:
    parts = [f"[train] epoch {m['epoch'] + 1}/{total} {m['phase']}", f"loss {m['train_loss']:.3f}",
             f"{m['train_images_per_s']:.0f} img/s", f"largest {m['val_acc_largest']:.4f}",
             f"smallest {m['val_acc_smallest']:.4f}"]
    if "val_acc_random_mean" in m:
        parts.append(f"random {m['val_acc_random_mean']:.4f} (spread {m['val_acc_random_spread']:.4f})")
    quantized = {k[len("val_qacc_"):]: v for k, v in m.items() if k.startswith("val_qacc_")}
    if quantized:
        parts.append("quantized " + " ".join(f"{k} {v:.4f}" for k, v in quantized.items()))
    return " | ".join(parts)

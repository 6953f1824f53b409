"""Quantization-aware fine-tuning (optionally distilled from the float sub-net) and BN-aware evaluation."""
from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ems_ray.errors import InputError
from ems_ray.supernet import evaluate, recalibrate_bn

from ._modules import calibrated_quant_layers


@dataclass
class FinetuneResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """Mean loss over the last tenth of the steps (at least one)."""
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return sum(tail) / len(tail)


def _cycle(loader: Iterable) -> Iterator:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise InputError("quantization_aware_finetune: the loader yielded no batches")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton's KL(teacher ‖ student) on temperature-softened outputs, scaled by T²."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                    log_target=True) * (t * t)


def quantization_aware_finetune(
    model: nn.Module,
    loader: Iterable,
    steps: int,
    lr: float,
    teacher: nn.Module | None = None,
    seed: int = 0,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    kd_weight: float = 1.0,
    temperature: float = 1.0,
) -> FinetuneResult:
    """Fine-tune a calibrated fake-quant model in place for `steps` batches.

    SGD (Nesterov momentum) with the learning rate decayed from `lr` to 0 on a cosine; gradients
    reach the weights through the straight-through estimator, and the ranges stay those of
    calibration. Loss: cross-entropy, plus `kd_weight` × the distillation loss from `teacher`
    (e.g. the float sub-net) when one is given. `loader` is cycled if it has fewer batches.

    Reproducible: the global torch RNG (dropout, augmentation) is seeded with `seed` inside a
    forked RNG state, and a loader with its own `generator` (as `make_loader` builds) is
    re-seeded with `seed`, so the batch order depends on `seed` only.
    """
    if steps < 0:
        raise InputError(f"steps: {steps} must be >= 0")
    calibrated_quant_layers(model, "quantization_aware_finetune")
    device = next(model.parameters()).device
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed)
    if teacher is not None:
        teacher.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    result = FinetuneResult(steps=steps, seconds=0.0)
    start = time.perf_counter()
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model.train()
        batches = _cycle(loader)
        for step in range(steps):
            images, labels = next(batches)[:2]
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / steps))
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(images)
                loss = loss + kd_weight * distillation_loss(logits, target, temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            result.losses.append(float(loss.detach()))
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def evaluate_quantized(model: nn.Module, bn_loader: Iterable, val_loader: Iterable, bn_batches: int,
                       max_batches: int | None = None) -> tuple[float, float]:
    """BN-aware evaluation: re-estimate BN statistics of the (quantized) model on `bn_batches`
    batches of `bn_loader`, then (accuracy, loss) on `val_loader`.

    Quantization shifts every conv's output distribution, so the float BN statistics no longer
    match; re-estimating them (as for any extracted sub-net) is part of measuring it.
    """
    recalibrate_bn(model, bn_loader, bn_batches)
    return evaluate(model, val_loader, max_batches)

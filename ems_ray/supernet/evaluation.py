"""Batch-norm recalibration and accuracy/loss evaluation of a (sub-)network.

A sub-net taken from the super network inherits running statistics accumulated over many
different sub-nets; they do not match its own activations, so its accuracy is only meaningful
after re-estimating them on a few training batches (OFA, APQ).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ems_ray.errors import InputError


def _device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters live; CPU for parameter-free wrappers (e.g. ONNX runtimes)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Iterable, num_batches: int) -> nn.Module:
    """Reset every BN's running statistics and re-estimate them as a cumulative average.

    Runs `num_batches` batches from `loader` with only the BN layers in train mode (dropout
    stays off), then leaves the model in eval mode. Works on the super network (for its active
    sub-net: only the active channels' statistics are re-estimated) and on extracted nets.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    device = _device_of(model)
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for i, (images, _) in enumerate(loader):
            if i >= num_batches:
                break
            model(images.to(device, non_blocking=True))
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
    return model


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable, max_batches: int | None = None) -> tuple[float, float]:
    """(accuracy in [0, 1], mean cross-entropy loss) over the loader, in eval mode."""
    device = _device_of(model)
    model.eval()
    correct, loss, seen = 0, 0.0, 0
    for i, (images, labels) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(images)
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
    if seen == 0:
        raise InputError("evaluate: the loader yielded no batches")
    return correct / seen, loss / seen

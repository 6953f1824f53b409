"""Calibration: the input range of every fake-quant layer from a few batches, by the KL criterion.

The batches are read once and kept. Pass 1 runs them through the network in float (every
fake-quant layer switched off) and records each quantized layer's largest input magnitude and
whether its input went negative; pass 2 runs them again and fills a histogram per layer on
[0, that maximum]. Each layer's range is then the KL choice over its histogram (with method "max",
the maximum itself, and pass 2 is skipped). Observing float
activations (as TensorRT does) makes a layer's range independent of the bits of the layers
before it, so one calibration serves a policy's every layer at once. Weight ranges are chosen
again from the current weights.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice

import torch
import torch.nn as nn

from ems_ray.errors import InputError

from ._modules import QuantLayerMixin, quant_layers
from ems_ray.quantizers import DEFAULT_BINS, DEFAULT_CANDIDATES, TINY_RANGE, kl_range, magnitude_histogram


@contextmanager
def quantization_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run every fake-quant layer of `model` in float inside the block (restored after)."""
    layers = list(quant_layers(model).values())
    before = [layer.quant_enabled for layer in layers]
    for layer in layers:
        layer.quant_enabled = False
    try:
        yield model
    finally:
        for layer, state in zip(layers, before):
            layer.quant_enabled = state


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def calibrate(model: nn.Module, loader: Iterable, num_batches: int, method: str = "kl",
              bins: int = DEFAULT_BINS, num_candidates: int = DEFAULT_CANDIDATES) -> dict[str, dict]:
    """Set the weight and input ranges of every fake-quant layer of `model`; returns their summaries.

    `loader` yields (images, labels); its first `num_batches` batches are used. `method` "kl"
    (default) or "max" (the max-abs range, for comparison). Leaves the model in eval mode.
    """
    layers = quant_layers(model)
    if not layers:
        raise InputError("calibrate: the model has no fake-quant layers (apply a QuantPolicy first)")
    if method not in ("kl", "max"):
        raise InputError(f"method: '{method}' not allowed; allowed values: ['kl', 'max']")
    if num_batches < 1:
        raise InputError(f"num_batches: {num_batches} must be at least 1")
    device = _device_of(model)
    batches = [images.to(device) for images, *_ in islice(loader, num_batches)]
    if not batches:
        raise InputError("calibrate: the loader yielded no batches")
    model.eval()
    for layer in layers.values():
        layer.calibrate_weight(method)

    maxima: dict[str, float] = {name: 0.0 for name in layers}
    negative: dict[str, bool] = {name: False for name in layers}
    hists: dict[str, torch.Tensor] = {}
    signs: dict[str, bool] = {}

    def observe_extremes(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            maxima[name] = max(maxima[name], float(x.abs().max()))
            negative[name] = negative[name] or bool((x < 0).any())
        return hook

    def observe_histogram(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            h = magnitude_histogram(args[0], maxima[name], signs[name], bins)
            hists[name] = hists[name] + h if name in hists else h
        return hook

    def run_pass(make_hook) -> None:
        handles = [layer.register_forward_pre_hook(make_hook(name)) for name, layer in layers.items()]
        try:
            with quantization_disabled(model):
                for images in batches:
                    model(images)
        finally:
            for handle in handles:
                handle.remove()

    run_pass(observe_extremes)
    signs.update({name: _input_signed(layer, negative[name]) for name, layer in layers.items()})
    if method == "kl":  # "max" needs no histogram
        run_pass(observe_histogram)

    for name, layer in layers.items():
        signed = signs[name]
        if method == "kl":
            v = kl_range(hists[name], maxima[name], layer.a_bits, signed, num_candidates)
        else:
            v = max(maxima[name], TINY_RANGE)
        layer.set_input_range(v, signed)
    return {name: layer.quant_summary() for name, layer in layers.items()}


def _input_signed(layer: QuantLayerMixin, saw_negative: bool) -> bool:
    """The layer's declared sign, or (declared None) whether calibration saw negative inputs."""
    return saw_negative if layer.input_signed is None else layer.input_signed

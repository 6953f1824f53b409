"""Fake-quant layers: a conv or linear layer whose input activation and weight are quantized.

`QuantConv2d` / `QuantLinear` subclass `nn.Conv2d` / `nn.Linear`, so parameter names (and a
state dict's weight keys) are those of the float layer they replace. Forward: quantize the
input at `a_bits` on its calibrated range, quantize the weight at `w_bits` (one range per
layer, as in the paper), then the float conv/linear on the quantized values. The batch norm
that follows stays a separate float layer; the export folds it (see `docs/quantization.md`).

Ranges are buffers (`weight_range`, `input_range`); bit-widths, the input's sign and whether it
was calibrated are Python attributes, kept in the state dict as extra state.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ems_ray.quantizers import check_bits, choose_range, fake_quantize, quant_levels


class NotCalibratedError(RuntimeError):
    """A fake-quant layer ran before `calibrate` gave its input a range."""


class QuantLayerMixin:
    """Shared state and behaviour of the fake-quant layers."""

    w_bits: int
    a_bits: int
    input_signed: bool | None
    calibrated: bool
    quant_enabled: bool
    weight: nn.Parameter

    def _init_quant(self, w_bits: int, a_bits: int, input_signed: bool | None) -> None:
        self.w_bits = check_bits(w_bits, "w_bits")
        self.a_bits = check_bits(a_bits, "a_bits")
        # None: decided by calibration (negative inputs seen → signed); see `apply_policy`.
        self.input_signed = input_signed
        self.calibrated = False
        # Off: the layer computes in float (calibration observes float activations this way).
        self.quant_enabled = True
        self.register_buffer("weight_range", torch.zeros(()))
        self.register_buffer("input_range", torch.zeros(()))

    # ----- ranges ----------------------------------------------------------------------------
    @torch.no_grad()
    def calibrate_weight(self, method: str = "kl") -> float:
        """Choose the weight range from the current weights (KL criterion by default)."""
        v = choose_range(self.weight, self.w_bits, signed=True, method=method)
        self.weight_range.fill_(v)
        return v

    @torch.no_grad()
    def set_input_range(self, v: float, signed: bool) -> None:
        self.input_range.fill_(v)
        self.input_signed = bool(signed)
        self.calibrated = True

    @property
    def weight_scale(self) -> float:
        return float(self.weight_range) / quant_levels(self.w_bits, True)

    @property
    def input_scale(self) -> float | None:
        if self.input_signed is None:
            return None
        return float(self.input_range) / quant_levels(self.a_bits, self.input_signed)

    def quant_summary(self) -> dict[str, Any]:
        """Bits, ranges and scales of this layer (the export sidecar's per-layer entry)."""
        return {
            "w_bits": self.w_bits, "a_bits": self.a_bits,
            "weight_range": float(self.weight_range), "weight_scale": self.weight_scale,
            "input_signed": self.input_signed, "input_range": float(self.input_range),
            "input_scale": self.input_scale, "calibrated": self.calibrated,
        }

    # ----- forward pieces ----------------------------------------------------------------------
    def quantized_operands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.quant_enabled:
            return x, self.weight
        if not self.calibrated or self.input_signed is None:
            raise NotCalibratedError(
                f"{type(self).__name__} has no input range yet: run calibrate(model, loader, num_batches) "
                "on the quantized model first"
            )
        x = fake_quantize(x, self.input_range, self.a_bits, self.input_signed)
        w = fake_quantize(self.weight, self.weight_range, self.w_bits, True)
        return x, w

    # ----- state dict ------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"w_bits": self.w_bits, "a_bits": self.a_bits, "input_signed": self.input_signed,
                "calibrated": self.calibrated}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.w_bits = check_bits(state["w_bits"], "w_bits")
        self.a_bits = check_bits(state["a_bits"], "a_bits")
        self.input_signed = state["input_signed"]
        self.calibrated = bool(state["calibrated"])

    def _quant_repr(self) -> str:
        sign = {None: "auto", True: "signed", False: "unsigned"}[self.input_signed]
        return f"w_bits={self.w_bits}, a_bits={self.a_bits}, input={sign}"


class QuantConv2d(QuantLayerMixin, nn.Conv2d):
    """`nn.Conv2d` with fake-quantized input activation and weight (straight-through gradients)."""

    def __init__(self, *args, w_bits: int = 8, a_bits: int = 8, input_signed: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_quant(w_bits, a_bits, input_signed)

    @classmethod
    @torch.no_grad()
    def from_float(cls, conv: nn.Conv2d, w_bits: int, a_bits: int, input_signed: bool | None) -> QuantConv2d:
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                conv.groups, conv.bias is not None, conv.padding_mode, w_bits=w_bits, a_bits=a_bits,
                input_signed=input_signed, device=conv.weight.device, dtype=conv.weight.dtype)
        if conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous():
            q = q.to(memory_format=torch.channels_last)
        q.weight.copy_(conv.weight)
        if conv.bias is not None:
            q.bias.copy_(conv.bias)
        q.train(conv.training)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = self.quantized_operands(x)
        return self._conv_forward(x, w, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


class QuantLinear(QuantLayerMixin, nn.Linear):
    """`nn.Linear` with fake-quantized input activation and weight (straight-through gradients)."""

    def __init__(self, *args, w_bits: int = 8, a_bits: int = 8, input_signed: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_quant(w_bits, a_bits, input_signed)

    @classmethod
    @torch.no_grad()
    def from_float(cls, linear: nn.Linear, w_bits: int, a_bits: int, input_signed: bool | None) -> QuantLinear:
        q = cls(linear.in_features, linear.out_features, linear.bias is not None, w_bits=w_bits, a_bits=a_bits,
                input_signed=input_signed, device=linear.weight.device, dtype=linear.weight.dtype)
        q.weight.copy_(linear.weight)
        if linear.bias is not None:
            q.bias.copy_(linear.bias)
        q.train(linear.training)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = self.quantized_operands(x)
        return F.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


QUANT_LAYER_TYPES = (QuantConv2d, QuantLinear)


def quant_layers(model: nn.Module) -> dict[str, QuantLayerMixin]:
    """Fake-quant layers of a model by qualified name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QUANT_LAYER_TYPES)}


def calibrated_quant_layers(model: nn.Module, caller: str, error: type[Exception] = ValueError) -> dict[str, QuantLayerMixin]:
    """`quant_layers`, checked: there must be some, and every one must have been calibrated."""
    layers = quant_layers(model)
    if not layers:
        raise error(f"{caller}: the model has no fake-quant layers (apply a QuantPolicy first)")
    uncalibrated = [name for name, layer in layers.items() if not layer.calibrated]
    if uncalibrated:
        raise error(f"{caller}: run calibrate first; uncalibrated layers: {uncalibrated[:5]}")
    return layers

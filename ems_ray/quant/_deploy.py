"""The deployable form of a calibrated fake-quant sub-net: integer grids and a BN-folded float graph.

A fake-quant layer computes `BN(conv(Q_a(x), Q_w(W)))`. With the batch norm's per-channel factor
k_c = gamma_c / sqrt(var_c + eps) folded in, the weight of output channel c is Q_w(W)_c * k_c:
the same integer codes as before with the per-channel scale `weight_scale * |k_c|` (a sign flip
is absorbed by the symmetric grid). So folding is exact with per-channel weights, and the
folded float graph built here (`deploy_graph`) holds, for every quantized layer:

- the already quantized weights, BN folded in (torch.fx's conv/BN fusion);
- an explicit clamp of the layer's input to its real range ([-v, v] or [0, v]), which is what
  the fake-quant grid clips to; `quantize_int8` turns it into integer codes.

`IntegerGrid` says how a layer's input sits on the 8-bit storage grid: uint8, zero point 0 for
[0, v] and 128 for [-v, v], and codes limited to [lo, hi] when the layer has fewer than 8 bits.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn as nn
from torch.fx.experimental.optimization import fuse

from ._modules import QuantConv2d, QuantLayerMixin, quant_layers
from ems_ray.quantizers import TINY_RANGE, fake_quantize, quant_levels

# uint8 codes: every activation is stored as uint8 (the fast u8s8 path of ONNX Runtime's CPU
# kernels); a signed grid is centred on 128.
UINT8_MAX = 255
SIGNED_ZERO_POINT = 128


@dataclass(frozen=True)
class IntegerGrid:
    """A layer's input on the uint8 grid: real = scale * (code - zero_point), code in [lo, hi]."""

    scale: float
    zero_point: int
    lo: int
    hi: int

    @property
    def narrower_than_storage(self) -> bool:
        """Whether the codes are a strict subset of 0..255 (then a Clip on the codes keeps them there)."""
        return (self.lo, self.hi) != (0, UINT8_MAX)

    @property
    def real_range(self) -> tuple[float, float]:
        return self.scale * (self.lo - self.zero_point), self.scale * (self.hi - self.zero_point)


def input_grid(layer: QuantLayerMixin) -> IntegerGrid:
    """The uint8 grid of a calibrated layer's input: its `a_bits` codes, as the fake-quant grid has them."""
    n = quant_levels(layer.a_bits, layer.input_signed)
    scale = max(float(layer.input_range), TINY_RANGE) / n
    if layer.input_signed:
        return IntegerGrid(scale, SIGNED_ZERO_POINT, SIGNED_ZERO_POINT - n, SIGNED_ZERO_POINT + n)
    return IntegerGrid(scale, 0, 0, n)


def quantized_weight(layer: QuantLayerMixin) -> torch.Tensor:
    """The layer's weight on its `w_bits` grid (codes * weight_scale), as the fake-quant forward uses it."""
    return fake_quantize(layer.weight.detach(), layer.weight_range, layer.w_bits, True)


def folded_weight_scales(layer: QuantLayerMixin, folded: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scales of the BN-folded weight: weight_scale * |k_c|.

    k_c is read back from the folded weight (least squares against the unfolded codes), so it is
    whatever factor the fusion applied; a channel whose codes are all zero keeps weight_scale.
    """
    codes = quantized_weight(layer).reshape(folded.shape[0], -1).double()
    folded = folded.detach().reshape(folded.shape[0], -1).double()
    norm = (codes * codes).sum(1)
    k = (folded * codes).sum(1) / norm.clamp_min(1e-300)
    return torch.where(norm > 0, k.abs(), torch.ones_like(k)) * layer.weight_scale


def _plain_copy(model: nn.Module) -> nn.Module:
    """A copy with every fake-quant layer replaced by a plain layer holding its quantized weight."""
    net = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format).requires_grad_(False)
    for name, layer in quant_layers(net).items():
        parent_name, _, attr = name.rpartition(".")
        if isinstance(layer, QuantConv2d):
            plain = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                              layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode)
        else:
            plain = nn.Linear(layer.in_features, layer.out_features, layer.bias is not None)
        with torch.no_grad():
            plain.weight.copy_(quantized_weight(layer))
            if layer.bias is not None:
                plain.bias.copy_(layer.bias)
        setattr(net.get_submodule(parent_name), attr, plain.eval().requires_grad_(False))
    return net


def deploy_graph(model: nn.Module) -> torch.fx.GraphModule:
    """The float graph `quantize_int8` starts from: BN folded, quantized weights, input clamps.

    Module names (hence ONNX initializer names `<layer>.weight`) are those of the fake-quant
    model. The network input gets no clamp: its quantizer saturates on the codes instead
    (see `quantize_int8`), so the input is quantized once.
    """
    layers = quant_layers(model)
    graph_module = fuse(_plain_copy(model))
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op != "call_module" or node.target not in layers or node.args[0].op == "placeholder":
            continue
        lo, hi = input_grid(layers[node.target]).real_range
        with graph.inserting_before(node):
            clamp = graph.call_function(torch.clamp, (node.args[0],), {"min": lo, "max": hi})
        node.replace_input_with(node.args[0], clamp)
    graph_module.recompile()
    return graph_module

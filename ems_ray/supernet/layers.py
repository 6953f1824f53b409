"""Elastic building blocks: convolutions and batch norm that run on a leading slice of their weights.

Each layer owns the weights of its largest setting; a smaller setting slices them (no masks, no
copies beyond the slice), so the active sub-net costs what a static net of that size costs.

The block convs can also run fake-quantized at the active sub-net's bit-widths (the `quant`
training phase, docs/supernet.md): input and weight quantized as `ems_ray.quantizers` does, with
ranges taken from the current batch and weight slice (max magnitude) instead of learned or
calibrated ones. A range learned per layer would be shared by sub-nets whose activations differ
widely in scale (BatchQuant's observation); the batch's own range follows each sub-net, and is what
`calibrate(..., method="max")` reproduces on an extracted sub-net.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ems_ray.errors import InputError
from ems_ray.quantizers import fake_quantize

# (weight bits, input-activation bits) of a fake-quantized conv; None: the conv runs in float.
LayerBits = tuple[int, int] | None


def batch_range_quantize(x: torch.Tensor, w: torch.Tensor, bits: LayerBits, input_signed: bool
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, w) fake-quantized at `bits` on their own max-magnitude ranges (straight-through
    gradients); unchanged when `bits` is None."""
    if bits is None:
        return x, w
    w_bits, a_bits = bits
    x_range = x.detach().abs().amax() if input_signed else x.detach().amax()
    return (fake_quantize(x, x_range, a_bits, input_signed),
            fake_quantize(w, w.detach().abs().amax(), w_bits, True))


def transform_key(big: int, small: int) -> str:
    return f"{big}to{small}"


class ElasticDepthwiseConv(nn.Module):
    """Depthwise conv with elastic kernel size and channel count (OFA's kernel transformation).

    One max-kernel weight is stored. A smaller kernel is the centre crop of the next larger
    *effective* kernel, multiplied by a learned (k² × k²) matrix shared by all channels and
    initialised to identity, so e.g. 3×3 = T₅→₃(crop(T₇→₅(crop(7×7)))). The matrices let small
    kernels differ from the centre of large ones without separate weights.
    """

    def __init__(self, max_channels: int, kernel_choices: Sequence[int], stride: int = 1):
        super().__init__()
        self.kernel_choices = sorted(kernel_choices)
        self.max_kernel = self.kernel_choices[-1]
        self.max_channels = max_channels
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.transforms = nn.ParameterDict()
        for big, small in zip(self.kernel_choices[:0:-1], self.kernel_choices[-2::-1]):
            self.transforms[transform_key(big, small)] = nn.Parameter(torch.eye(small * small))
        self.active_kernel = self.max_kernel
        self.active_bits: LayerBits = None  # its input is a ReLU6 output: unsigned

    def kernel_weight(self, kernel: int, channels: int | None = None) -> torch.Tensor:
        """(channels, 1, kernel, kernel) effective weight of a setting."""
        if kernel not in self.kernel_choices:
            raise InputError(f"kernel: {kernel} not allowed; allowed values: {self.kernel_choices}")
        w = self.weight if channels is None or channels == self.max_channels else self.weight[:channels]
        size = self.max_kernel
        for small in reversed(self.kernel_choices[:-1]):
            if small < kernel:
                break
            start = (size - small) // 2
            crop = w[:, :, start:start + small, start:start + small]
            matrix = self.transforms[transform_key(size, small)]
            w = (crop.reshape(-1, small * small) @ matrix).reshape(-1, 1, small, small)
            size = small
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, k = x.shape[1], self.active_kernel
        x, w = batch_range_quantize(x, self.kernel_weight(k, c), self.active_bits, input_signed=False)
        return F.conv2d(x, w, None, self.stride, k // 2, 1, c)

    def extra_repr(self) -> str:
        return f"{self.max_channels}, kernels={self.kernel_choices}, stride={self.stride}, active_kernel={self.active_kernel}"


class ElasticPointwiseConv(nn.Module):
    """1×1 conv whose input channels follow the input and whose output channels are `active_out`.

    `input_signed`: whether its input can be negative (the expand conv reads the residual stream),
    which decides the fake-quant grid of the input when `active_bits` is set."""

    def __init__(self, max_in: int, max_out: int, input_signed: bool = True):
        super().__init__()
        self.max_in, self.max_out = max_in, max_out
        self.weight = nn.Parameter(torch.empty(max_out, max_in, 1, 1))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.active_out = max_out
        self.input_signed = input_signed
        self.active_bits: LayerBits = None

    def active_weight(self, in_channels: int, out_channels: int) -> torch.Tensor:
        w = self.weight
        if out_channels != self.max_out:
            w = w[:out_channels]
        if in_channels != self.max_in:
            w = w[:, :in_channels]
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = batch_range_quantize(x, self.active_weight(x.shape[1], self.active_out), self.active_bits,
                                    self.input_signed)
        return F.conv2d(x, w)

    def extra_repr(self) -> str:
        return f"{self.max_in}, {self.max_out}, active_out={self.active_out}, active_bits={self.active_bits}"


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the first c channels of its input (c = the input's channel count).

    Training uses the batch statistics of the active channels and updates the matching slice of
    the running statistics in place; evaluation uses that slice.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        else:
            factor = 0.0
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.running_mean is not None else None,
            self.running_var[:c] if self.running_var is not None else None,
            self.weight[:c], self.bias[:c], use_batch_stats, factor, self.eps,
        )

    @torch.no_grad()
    def to_static(self, channels: int) -> nn.BatchNorm2d:
        """A plain BN holding the first `channels` affine parameters and running statistics."""
        bn = nn.BatchNorm2d(channels, self.eps, self.momentum).to(self.weight.device)
        bn.weight.copy_(self.weight[:channels])
        bn.bias.copy_(self.bias[:channels])
        bn.running_mean.copy_(self.running_mean[:channels])
        bn.running_var.copy_(self.running_var[:channels])
        bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class ElasticMBBlock(nn.Module):
    """Inverted residual block (1×1 expand, k×k depthwise, 1×1 project) with elastic mid and kernel.

    `active_mid` picks the expanded width (the channel-pruning choice) and `active_kernel` the
    depthwise kernel; input/output channels and stride are fixed by the block's slot.
    """

    def __init__(self, in_channels: int, out_channels: int, max_mid: int, kernel_choices: Sequence[int], stride: int):
        super().__init__()
        self.in_channels, self.out_channels, self.max_mid, self.stride = in_channels, out_channels, max_mid, stride
        self.expand = ElasticPointwiseConv(in_channels, max_mid)
        self.expand_bn = ElasticBatchNorm2d(max_mid)
        self.dw = ElasticDepthwiseConv(max_mid, kernel_choices, stride)
        self.dw_bn = ElasticBatchNorm2d(max_mid)
        self.project = ElasticPointwiseConv(max_mid, out_channels, input_signed=False)
        self.project_bn = ElasticBatchNorm2d(out_channels)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_channels == out_channels

    @property
    def active_mid(self) -> int:
        return self.expand.active_out

    @property
    def active_kernel(self) -> int:
        return self.dw.active_kernel

    def set_active(self, kernel: int, mid: int, bits: tuple[int, int, int, int] | None = None) -> None:
        """Choose the setting; `bits` (pw_w, pw_a, dw_w, dw_a) runs the convs fake-quantized as
        `QuantPolicy.layer_bits` assigns them (expand and project at pw, depthwise at dw)."""
        if not 0 < mid <= self.max_mid:
            raise InputError(f"mid_channels: {mid} outside 1..{self.max_mid}")
        if kernel not in self.dw.kernel_choices:
            raise InputError(f"kernel: {kernel} not allowed; allowed values: {self.dw.kernel_choices}")
        self.expand.active_out = mid
        self.dw.active_kernel = kernel
        pw, dw = (None, None) if bits is None else ((bits[0], bits[1]), (bits[2], bits[3]))
        self.expand.active_bits = self.project.active_bits = pw
        self.dw.active_bits = dw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.expand_bn(self.expand(x)))
        y = self.act(self.dw_bn(self.dw(y)))
        y = self.project_bn(self.project(y))
        return x + y if self.residual else y

    @torch.no_grad()
    def to_static(self, kernel: int, mid: int, slot_index: int = -1, config=None) -> MBBlock:
        """The static block of one setting, its depthwise kernel already transformed."""
        block = MBBlock(self.in_channels, self.out_channels, mid, kernel, self.stride, slot_index, config)
        block.to(self.expand.weight.device)
        block.expand.weight.copy_(self.expand.active_weight(self.in_channels, mid))
        block.expand_bn = self.expand_bn.to_static(mid)
        block.dw.weight.copy_(self.dw.kernel_weight(kernel, mid))
        block.dw_bn = self.dw_bn.to_static(mid)
        block.project.weight.copy_(self.project.active_weight(mid, self.out_channels))
        block.project_bn = self.project_bn.to_static(self.out_channels)
        return block

    @torch.no_grad()
    def sort_channels(self) -> torch.Tensor:
        """Reorder mid channels by importance (L1 norm of the project weights reading them).

        Expand outputs, both mid BNs, depthwise channels and project inputs are permuted alike,
        so the block computes the same function; narrower settings then keep the most important
        channels. Returns the permutation (new position → old channel).
        """
        importance = self.project.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True, stable=True)
        _permute_(self.expand.weight, order, 0)
        for bn in (self.expand_bn, self.dw_bn):
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                _permute_(t, order, 0)
        _permute_(self.dw.weight, order, 0)
        _permute_(self.project.weight, order, 1)
        return order


def _permute_(t: torch.Tensor, order: torch.Tensor, dim: int) -> None:
    t.copy_(t.index_select(dim, order))


class ConvBNAct(nn.Sequential):
    """Static conv + BN (+ ReLU6), the fixed layers (stem, head) shared by super and extracted nets."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)
        if act:
            self.act = nn.ReLU6(inplace=True)


class FirstBlock(nn.Module):
    """The fixed first block (expand ratio 1): depthwise k×k + BN + ReLU6, then 1×1 project + BN."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int):
        super().__init__()
        self.dw = nn.Conv2d(in_channels, in_channels, kernel, stride, kernel // 2, groups=in_channels, bias=False)
        self.dw_bn = nn.BatchNorm2d(in_channels)
        self.project = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project_bn(self.project(self.act(self.dw_bn(self.dw(x)))))
        return x + y if self.residual else y


class MBBlock(nn.Module):
    """Static inverted residual block of an extracted sub-net.

    Convs are plain `nn.Conv2d` attributes `expand`, `dw`, `project` so a quantizer can find and
    replace them by name (`blocks.<slot>.expand`); `slot_index` and `config` record where the
    block came from and its choices (including the bit-widths, unused here).
    """

    def __init__(self, in_channels: int, out_channels: int, mid: int, kernel: int, stride: int, slot_index: int = -1, config=None):
        super().__init__()
        self.slot_index, self.config = slot_index, config
        self.in_channels, self.out_channels, self.mid, self.kernel, self.stride = in_channels, out_channels, mid, kernel, stride
        self.expand = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(mid)
        self.dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.dw_bn = nn.BatchNorm2d(mid)
        self.project = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.expand_bn(self.expand(x)))
        y = self.act(self.dw_bn(self.dw(y)))
        y = self.project_bn(self.project(y))
        return x + y if self.residual else y


class ClassifierHead(nn.Module):
    """1×1 conv to `head_channels` + BN + ReLU6, global average pool, dropout, linear."""

    def __init__(self, in_channels: int, head_channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.conv = ConvBNAct(in_channels, head_channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(x))

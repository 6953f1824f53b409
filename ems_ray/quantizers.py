"""Linear quantizers (paper equation 5) and the KL-divergence choice of their range.

A tensor is quantized at b bits to a linear grid on [-v, v] (weights, and activations that can be
negative) or [0, v] (activations after ReLU6):

    signed:    x' = s · clamp(round(x / s), -n, n),  n = 2^(b-1) - 1,  s = v / n
    unsigned:  x' = s · clamp(round(x / s),  0, n),  n = 2^b - 1,      s = v / n

Equation 5 puts 2^b levels on [-v, v]; the signed grid here uses 2^b - 1 of them so that zero is a
level (zero padding and zero weights stay exact, and the grid is an integer code with zero point
0, which is what ONNX QuantizeLinear/DequantizeLinear and integer hardware use). Unsigned
activations keep all 2^b levels.

The range v is the candidate, among fractions of the largest magnitude, whose quantized
distribution is closest in KL divergence to the original one (`kl_range`), so it is never wider
than the max-abs range.
"""
from __future__ import annotations

import torch

from ems_ray.errors import InputError

MIN_BITS, MAX_BITS = 2, 8
DEFAULT_BINS = 2048
DEFAULT_CANDIDATES = 128
# A range of exactly zero (an all-zero tensor) would give a zero scale; any tiny positive range
# quantizes such a tensor exactly.
TINY_RANGE = 1e-8
# Probability given to a bin that holds mass in the reference but none in the quantized histogram,
# so that the divergence stays finite (and large) instead of infinite.
_KL_SMOOTHING = 1e-8


def check_bits(bits: int, name: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise InputError(f"{name}: {bits!r} not supported; allowed values: {MIN_BITS}..{MAX_BITS}")
    return bits


def quant_levels(bits: int, signed: bool) -> int:
    """Largest integer code n: 2^(b-1) - 1 for the symmetric signed grid, 2^b - 1 for [0, v]."""
    check_bits(bits)
    return 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1


class _FakeQuantize(torch.autograd.Function):
    """round(x / scale) clamped to [low, high], times scale; gradient 1 where the code was in range.

    Written out rather than `torch.fake_quantize_per_tensor_affine`, which builds its gradient mask
    even under inference: on this CPU it took 3× as long in inference and 1.7× in training
    (benchmarks/bench_quant.py). Division then round-half-to-even is ONNX QuantizeLinear's rule.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, low: int, high: int) -> torch.Tensor:
        codes = torch.div(x, scale).round_()
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward((codes >= low) & (codes <= high))
        return codes.clamp_(low, high).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


def fake_quantize(x: torch.Tensor, v: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """Quantize-dequantize `x` to `bits` on [-v, v] (signed) or [0, v], with a straight-through
    gradient: it passes unchanged where x falls on the grid (inside the range, up to half a step
    beyond its ends, where rounding still lands on the end level) and is zero outside.

    The b-bit integer codes have zero point 0; the range is not differentiated (ranges come from
    calibration or from the batch, never from the loss).
    """
    n = quant_levels(bits, signed)
    scale = v.detach().to(device=x.device, dtype=x.dtype).clamp_min(TINY_RANGE) / n
    return _FakeQuantize.apply(x, scale, -n if signed else 0, n)


def magnitude_histogram(x: torch.Tensor, max_value: float, signed: bool, bins: int = DEFAULT_BINS) -> torch.Tensor:
    """Histogram on [0, max_value] of |x| (signed) or of x clipped at 0 (unsigned), in float64.

    Values beyond `max_value` land in the last bin: where the quantizer would put them. Exact
    zeros (most of a ReLU6 output) are left out: zero is a level of every grid, so they are
    quantized exactly whatever the range and say nothing about it; kept, their spike would
    dominate the divergence and pull the range down for no gain.
    """
    x = x.detach().float().reshape(-1)
    x = x.abs() if signed else x.clamp_min(0)
    x = x[x != 0]
    top = max(float(max_value), TINY_RANGE)
    return torch.histc(x.clamp_max(top), bins=bins, min=0.0, max=top).double()


def kl_range(hist: torch.Tensor, max_value: float, bits: int, signed: bool,
             num_candidates: int = DEFAULT_CANDIDATES) -> float:
    """The range v ≤ `max_value` minimising KL(P ‖ Q) for a histogram of magnitudes.

    `hist` has equal bins on [0, max_value]. For each candidate v (fractions of max_value at bin
    edges, from 1/16 of it (as TensorRT) and at least one bin per quantization level, up to
    max_value itself; fewer bins would make P and Q trivially alike), as in TensorRT's
    calibration: P is the histogram clipped at v (the mass beyond v added to the last bin inside,
    where the quantizer puts it); Q is the quantized histogram, each level's in-range mass spread
    evenly over the non-empty bins that round to it. Clipping shows up as the spike P has at the
    edge and Q lacks; a coarse grid as the flattening within each level. All candidates are
    scored at once, as a (candidates × bins) array.
    """
    n = quant_levels(bits, signed)
    hist = hist.detach().double().cpu().reshape(-1)  # small; the candidate arrays live on the CPU
    num_bins = hist.numel()
    total = float(hist.sum())
    if max_value <= 0 or total <= 0:
        return TINY_RANGE
    if num_bins <= n:
        return float(max_value)
    width = max_value / num_bins
    # Candidates as the number of bins kept inside the range.
    first = max(n, num_bins // 16)
    cand = torch.linspace(first, num_bins, num_candidates, dtype=torch.float64).round().long().unique()
    j = torch.arange(num_bins, dtype=torch.long)
    inside = j[None, :] < cand[:, None]                                          # (K, B)
    kept = hist[None, :] * inside
    tail = total - kept.sum(1)
    p = kept.clone()
    p[torch.arange(len(cand)), cand - 1] += tail
    # Level of each bin (by its centre) under each candidate's step; bins outside go to a spare slot.
    step = cand.double() * width / n
    centres = (j.double() + 0.5) * width
    level = torch.round(centres[None, :] / step[:, None]).clamp_(0, n).long()
    level = torch.where(inside, level, torch.full_like(level, n + 1))
    nonzero = (p > 0).double()
    mass = torch.zeros(len(cand), n + 2, dtype=torch.float64).scatter_add_(1, level, kept)
    count = torch.zeros(len(cand), n + 2, dtype=torch.float64).scatter_add_(1, level, nonzero)
    q = (mass / count.clamp_min(1)).gather(1, level) * nonzero
    p = p / total
    q = q / q.sum(1, keepdim=True).clamp_min(1e-300)
    terms = torch.where(p > 0, p * torch.log(p / q.clamp_min(_KL_SMOOTHING)), torch.zeros_like(p))
    kl = terms.sum(1)
    best = int(torch.argmin(kl))
    return float(cand[best]) * width


def max_abs_range(x: torch.Tensor, signed: bool) -> float:
    """The widest sensible range: max |x| (signed) or max(x, 0) (unsigned)."""
    x = x.detach()
    return float(x.abs().max() if signed else x.clamp_min(0).max()) if x.numel() else 0.0


def choose_range(x: torch.Tensor, bits: int, signed: bool = True, method: str = "kl",
                 bins: int = DEFAULT_BINS, num_candidates: int = DEFAULT_CANDIDATES) -> float:
    """Range v for quantizing the tensor `x` at `bits` ("kl" or "max").

    A tensor with fewer than 16 non-zero values per quantization level (a small weight tensor
    at high bits, e.g. the 16×3×3 stem at 8 bits) cannot fill a histogram at the grid's
    resolution; the KL choice would follow sampling noise, so it gets the max-abs range.
    """
    top = max_abs_range(x, signed)
    if method not in ("kl", "max"):
        raise InputError(f"method: '{method}' not allowed; allowed values: ['kl', 'max']")
    if method == "max" or int((x != 0).sum()) < 16 * (quant_levels(bits, signed) + 1):
        return max(top, TINY_RANGE)
    return kl_range(magnitude_histogram(x, top, signed, bins), top, bits, signed, num_candidates)

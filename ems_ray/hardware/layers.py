"""Layer shapes the cost model prices, and the layers a search space (or one sub-net) consists of.

A `ConvLayer` is everything the hardware needs to know about a layer apart from its bit-widths, so
it is the key of the LUT. The functions here derive layers from a `SearchSpace`, which stays the
single source of channel counts, strides and resolutions.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Literal

from ems_ray.errors import InputError
from ems_ray.space.search_space import conv_out

if TYPE_CHECKING:
    from ems_ray.space import BlockSlot, SearchSpace, SubnetConfig

LayerKind = Literal["conv", "pw", "dw", "fc"]
LAYER_KINDS: tuple[str, ...] = ("conv", "pw", "dw", "fc")
BitPair = tuple[int, int]  # (weight bits, input-activation bits)


@dataclass(frozen=True)
class ConvLayer:
    """A convolution at batch 1 with 'same' padding.

    kind: "conv" dense kxk, "pw" 1x1, "dw" depthwise kxk (one filter per channel, so
    in_channels == out_channels), "fc" fully connected (a 1x1 conv on a 1x1 input).
    """

    kind: LayerKind
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    in_h: int
    in_w: int

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise InputError(f"kind: '{self.kind}' not allowed; allowed values: {list(LAYER_KINDS)}")
        for name in ("in_channels", "out_channels", "kernel", "stride", "in_h", "in_w"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name}: must be a positive int, got {value!r}")
        if self.kind == "dw" and self.in_channels != self.out_channels:
            raise InputError(
                f"out_channels: a depthwise layer keeps its channels ({self.in_channels}), got {self.out_channels}"
            )
        if self.kind in ("pw", "fc") and (self.kernel, self.stride) != (1, 1):
            raise InputError(f"kernel/stride: a '{self.kind}' layer is 1x1 with stride 1")
        if self.kind == "fc" and (self.in_h, self.in_w) != (1, 1):
            raise InputError("in_h/in_w: an 'fc' layer takes a 1x1 input (after global pooling)")

    @property
    def out_h(self) -> int:
        return conv_out(self.in_h, self.stride)

    @property
    def out_w(self) -> int:
        return conv_out(self.in_w, self.stride)

    @property
    def reduction(self) -> int:
        """Products summed into one output: k*k for depthwise, k*k*in_channels otherwise."""
        taps = self.kernel * self.kernel
        return taps if self.kind == "dw" else taps * self.in_channels

    @property
    def macs(self) -> int:
        return self.out_channels * self.out_h * self.out_w * self.reduction

    @property
    def weights(self) -> int:
        return self.out_channels * self.reduction

    def describe(self) -> str:
        k = f" k{self.kernel}" if self.kernel > 1 else ""
        s = f" s{self.stride}" if self.stride > 1 else ""
        return f"{self.kind} {self.in_channels}->{self.out_channels}{k}{s} @{self.in_h}x{self.in_w}"


# ----- layers of a search space --------------------------------------------------------------
def fixed_layers(space: SearchSpace) -> list[ConvLayer]:
    """Stem, first block (dw, pw), head 1x1 conv and classifier: always present, at fixed_bits."""
    sp = space
    stem = ConvLayer("conv", sp.image_channels, sp.stem.out_channels, sp.stem.kernel, sp.stem.stride,
                     sp.input_resolution, sp.input_resolution)
    c, r = sp.stem.out_channels, sp.stem_resolution
    first_dw = ConvLayer("dw", c, c, sp.first_block.kernel, sp.first_block.stride, r, r)
    r = sp.first_block_resolution
    first_pw = ConvLayer("pw", c, sp.first_block.out_channels, 1, 1, r, r)
    r = sp.final_resolution
    head = ConvLayer("pw", sp.last_channels, sp.head_channels, 1, 1, r, r)
    classifier = ConvLayer("fc", sp.head_channels, sp.num_classes, 1, 1, 1, 1)
    return [stem, first_dw, first_pw, head, classifier]


def block_layers(slot: BlockSlot, mid: int, kernel: int) -> tuple[ConvLayer, ConvLayer, ConvLayer]:
    """(expand pw, depthwise, project pw) of one searchable block with its choices."""
    r_in, r_out = slot.in_resolution, slot.out_resolution
    expand = ConvLayer("pw", slot.in_channels, mid, 1, 1, r_in, r_in)
    depthwise = ConvLayer("dw", mid, mid, kernel, slot.stride, r_in, r_in)
    project = ConvLayer("pw", mid, slot.out_channels, 1, 1, r_out, r_out)
    return expand, depthwise, project


def enumerate_layers(space: SearchSpace) -> dict[ConvLayer, tuple[BitPair, ...]]:
    """Every distinct layer the space can produce, with the (wbits, abits) pairs it can take.

    Fixed layers take only (fixed_bits, fixed_bits); expand/project pointwise layers the
    (pw_w, pw_a) choices; depthwise layers the (dw_w, dw_a) choices. A shape that occurs in
    several roles gets the union of their pairs. Order: first appearance in the network.
    """
    pw_w, pw_a, dw_w, dw_a = space.bits.as_tuple()
    pw_pairs = tuple(product(pw_w, pw_a))
    dw_pairs = tuple(product(dw_w, dw_a))
    fixed = ((space.fixed_bits, space.fixed_bits),)
    found: dict[ConvLayer, list[BitPair]] = {}

    def add(layer: ConvLayer, pairs: tuple[BitPair, ...]) -> None:
        have = found.setdefault(layer, [])
        have.extend(p for p in pairs if p not in have)

    stem, first_dw, first_pw, head, classifier = fixed_layers(space)
    for layer in (stem, first_dw, first_pw):
        add(layer, fixed)
    for slot in space.slots:
        for mid in slot.mid_choices:
            for kernel in space.kernel_choices:
                expand, depthwise, project = block_layers(slot, mid, kernel)
                add(expand, pw_pairs)
                add(depthwise, dw_pairs)
                add(project, pw_pairs)
    add(head, fixed)
    add(classifier, fixed)
    return {layer: tuple(sorted(pairs)) for layer, pairs in found.items()}


def subnet_layers(space: SearchSpace, config: SubnetConfig) -> list[tuple[ConvLayer, int, int]]:
    """(layer, wbits, abits) for every layer one sub-net runs, in network order."""
    from ems_ray.space import validate_subnet

    validate_subnet(space, config)
    fb = space.fixed_bits
    stem, first_dw, first_pw, head, classifier = fixed_layers(space)
    out = [(stem, fb, fb), (first_dw, fb, fb), (first_pw, fb, fb)]
    for slot in space.slots:
        if slot.position >= config.depths[slot.stage]:
            continue
        block = config.blocks[slot.index]
        expand, depthwise, project = block_layers(slot, block.mid_channels, block.kernel)
        out += [
            (expand, block.pw_w_bits, block.pw_a_bits),
            (depthwise, block.dw_w_bits, block.dw_a_bits),
            (project, block.pw_w_bits, block.pw_a_bits),
        ]
    out += [(head, fb, fb), (classifier, fb, fb)]
    return out


def mobilenet_v2_layers(resolution: int = 224, num_classes: int = 1000) -> list[ConvLayer]:
    """MobileNetV2 (width 1.0), the network the paper's 9.1 ms / 12.5 mJ BitFusion figure is for."""
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]
    r = resolution
    layers = [ConvLayer("conv", 3, 32, 3, 2, r, r)]
    c, r = 32, conv_out(r, 2)
    for expand_ratio, out_c, repeats, first_stride in settings:
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            mid = c * expand_ratio
            if expand_ratio != 1:
                layers.append(ConvLayer("pw", c, mid, 1, 1, r, r))
            layers.append(ConvLayer("dw", mid, mid, 3, stride, r, r))
            r = conv_out(r, stride)
            layers.append(ConvLayer("pw", mid, out_c, 1, 1, r, r))
            c = out_c
    layers.append(ConvLayer("pw", c, 1280, 1, 1, r, r))
    layers.append(ConvLayer("fc", 1280, num_classes, 1, 1, 1, 1))
    return layers

"""The BitFusion per-layer model: configuration, the cost formulas, monotonicity, depthwise mapping."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from ems_ray.hardware import BitFusionConfig, BitFusionModel, ConvLayer, compare_to_reference, mobilenet_v2_layers
from ems_ray.hardware.config import ceil_div

MODEL = BitFusionModel()
BITS = (2, 4, 6, 8)


def random_layers(n: int, seed: int) -> list[ConvLayer]:
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(n):
        kind = str(rng.choice(["conv", "pw", "dw", "fc"]))
        c_in, c_out = int(rng.integers(1, 700)), int(rng.integers(1, 700))
        spatial = kind in ("conv", "dw")
        k = int(rng.choice([3, 5, 7])) if spatial else 1
        s = int(rng.choice([1, 2])) if spatial else 1
        h = 1 if kind == "fc" else int(rng.integers(1, 113))
        layers.append(ConvLayer(kind, c_in, c_in if kind == "dw" else c_out, k, s, h, h))
    return layers


# ----- configuration -----------------------------------------------------------------------
def test_defaults_are_the_published_bitfusion():
    cfg = BitFusionConfig()
    assert (cfg.rows, cfg.columns, cfg.frequency_mhz, cfg.dram_bits_per_cycle) == (16, 32, 500.0, 192)
    assert cfg.buffer_bits("weight") == 32 * 1024 * 8  # half of 64 KiB
    assert cfg.buffer_bits("activation") == 16 * 1024 * 8
    assert cfg.buffer_bits("output") == 8 * 1024 * 8
    assert cfg.core_pj_per_cycle == 235.1 and cfg.dram_pj_per_bit == 15.0
    # simulator-faithful defaults (see docs/hardware.md)
    assert cfg.load_partial_sums and cfg.depthwise_lanes == 8
    assert cfg.depthwise_zero_weights and cfg.depthwise_blocks_as_layers


def test_depthwise_block_sizes():
    cfg = BitFusionConfig()
    assert [int(cfg.depthwise_block(pf)) for pf in (1, 2, 4, 16)] == [8, 16, 32, 32]  # 8 lanes x pf, <= 32 columns
    assert cfg.depthwise_block_choices() == [8, 16, 32]
    every_row = BitFusionConfig(depthwise_lanes=None)
    assert [int(every_row.depthwise_block(pf)) for pf in (1, 2, 4)] == [16, 32, 32]
    assert every_row.depthwise_block_choices() == [16, 32]


@pytest.mark.parametrize("w, a, pf", [(8, 8, 1), (8, 4, 2), (4, 8, 2), (4, 4, 4), (6, 6, 1), (6, 4, 2),
                                      (2, 2, 16), (1, 1, 16), (3, 3, 4), (5, 8, 1)])
def test_perf_factor(w, a, pf):
    assert BitFusionConfig().perf_factor(w, a) == pf


@pytest.mark.parametrize("kwargs, field", [
    ({"rows": 0}, "rows"),
    ({"dram_bits_per_cycle": -1}, "dram_bits_per_cycle"),
    ({"dram_pj_per_bit": -2.0}, "dram_pj_per_bit"),
    ({"min_bits": 8, "max_bits": 4}, "min_bits"),
    ({"partial_sum_bits": 8}, "partial_sum_bits"),
    ({"output_sram_kib": 0.01}, "output_sram_kib"),
    ({"depthwise_lanes": 17}, "depthwise_lanes"),
    ({"depthwise_lanes": 0}, "depthwise_lanes"),
    ({"frequency": 500}, "frequency"),
])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        BitFusionConfig(**kwargs)


def test_config_is_frozen_and_hash_tracks_parameters():
    cfg = BitFusionConfig()
    with pytest.raises(ValidationError):
        cfg.rows = 8
    assert cfg.config_hash() == BitFusionConfig().config_hash()
    assert cfg.config_hash() != BitFusionConfig(dram_bits_per_cycle=128).config_hash()


@pytest.mark.parametrize("kwargs, field", [
    (dict(kind="conv2d", in_channels=3, out_channels=8, kernel=3, stride=1, in_h=8, in_w=8), "kind"),
    (dict(kind="conv", in_channels=0, out_channels=8, kernel=3, stride=1, in_h=8, in_w=8), "in_channels"),
    (dict(kind="dw", in_channels=8, out_channels=16, kernel=3, stride=1, in_h=8, in_w=8), "out_channels"),
    (dict(kind="pw", in_channels=8, out_channels=16, kernel=3, stride=1, in_h=8, in_w=8), "kernel"),
    (dict(kind="fc", in_channels=8, out_channels=16, kernel=1, stride=1, in_h=7, in_w=7), "in_h"),
])
def test_layer_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ConvLayer(**kwargs)


def test_bad_bits_rejected():
    with pytest.raises(ValueError, match="wbits"):
        MODEL.layer_cost(ConvLayer("pw", 8, 8, 1, 1, 4, 4), 9, 8)


# ----- the formulas --------------------------------------------------------------------------
def test_compute_cycles_formula_for_a_layer_in_one_tile():
    layer = ConvLayer("pw", 40, 72, 1, 1, 4, 4)  # everything fits one tile
    for w, a in itertools.product(BITS, BITS):
        pf = MODEL.config.perf_factor(w, a)
        c = MODEL.layer_cost(layer, w, a)
        assert c.compute_cycles == ceil_div(72, 32) * 4 * 4 * 1 * ceil_div(40, 16 * pf)
        assert c.macs == 40 * 72 * 16 and c.bitops == c.macs * w * a


def test_latency_bounds_and_energy_breakdown():
    cfg = MODEL.config
    for layer in random_layers(25, seed=1):
        c = MODEL.layer_cost(layer, 8, 8)
        fast, thrifty = c.fastest, c.least_energy
        assert c.cycles >= c.compute_cycles
        assert c.cycles >= c.dram_bits / cfg.dram_bits_per_cycle
        assert c.latency_ms == pytest.approx(c.cycles / (cfg.frequency_mhz * 1e3))
        assert thrifty.energy_mj <= fast.energy_mj + 1e-15 and thrifty.cycles >= fast.cycles
        parts = thrifty.energy_core_mj + thrifty.energy_sram_mj + thrifty.energy_dram_mj + thrifty.energy_leakage_mj
        assert c.energy_mj == pytest.approx(parts)
        # every operand crosses the DRAM interface at least once; partial sums are loaded as well
        compulsory = layer.weights * 8 + layer.in_channels * layer.in_h * layer.in_w * 8 \
            + layer.out_channels * layer.out_h * layer.out_w * (cfg.output_bits + cfg.partial_sum_bits)
        assert c.dram_bits >= compulsory


def test_tiles_fit_half_buffers():
    cfg = MODEL.config
    for layer in random_layers(25, seed=2):
        for w, a in ((8, 8), (4, 4)):
            c = MODEL.layer_cost(layer, w, a)
            t = c.tiling
            filters = t.out_channels if layer.kind == "dw" else t.out_channels * t.in_channels
            assert filters * layer.kernel ** 2 * w <= cfg.buffer_bits("weight")
            rows = min(layer.in_h, (t.out_h - 1) * layer.stride + layer.kernel)
            cols = min(layer.in_w, (t.out_w - 1) * layer.stride + layer.kernel)
            assert t.in_channels * rows * cols * a <= cfg.buffer_bits("activation")
            psums = ceil_div(t.out_channels, cfg.columns) * cfg.columns * t.out_h * t.out_w
            assert psums * cfg.partial_sum_bits <= cfg.buffer_bits("output")
            assert set(c.loop_order) == ({"channels", "pixels"} if layer.kind == "dw" else {"oc", "ic", "pixels"})


def test_weights_too_big_for_the_buffer_are_refetched_or_streamed_once():
    """A 1x1 conv whose weights (2.4 Mbit) dwarf the 256 kbit weight half-buffer and whose input
    (1.3 Mbit) dwarfs the activation half: a tiling must trade re-fetches, and DRAM traffic shows it."""
    layer = ConvLayer("pw", 1536, 200, 1, 1, 14, 14)
    c = MODEL.layer_cost(layer, 8, 8)
    once = layer.weights * 8 + 1536 * 196 * 8 + 200 * 196 * 32
    assert c.dram_bits > once


def test_output_writeback_width_matters_for_memory_bound_layers():
    layer = ConvLayer("pw", 16, 96, 1, 1, 112, 112)  # tiny reduction, huge output: memory-bound
    wide = MODEL.layer_cost(layer, 8, 8)
    # on-chip requantisation: accumulators start at zero on chip, 8-bit outputs leave it
    narrow = BitFusionModel(BitFusionConfig(output_bits=8, load_partial_sums=False)).layer_cost(layer, 8, 8)
    assert wide.memory_bound
    assert narrow.latency_ms < 0.5 * wide.latency_ms


def test_partial_sums_are_loaded_before_the_reduction():
    """The authors' simulator reads every output tile's 32-bit partial sums in from DRAM as well as
    writing them out: a single-pass, memory-bound pointwise layer moves each output twice, and then
    matches the APQ release's entry (0.552022 ms) to the cycle."""
    layer = ConvLayer("pw", 16, 64, 1, 1, 112, 112)
    outputs = 64 * 112 * 112
    once = layer.weights * 8 + 16 * 112 * 112 * 8
    loaded = MODEL.layer_cost(layer, 8, 8)
    zeroed = BitFusionModel(BitFusionConfig(load_partial_sums=False)).layer_cost(layer, 8, 8)
    assert zeroed.dram_bits == once + outputs * 32
    assert loaded.dram_bits == once + outputs * 64
    assert loaded.latency_ms == pytest.approx(0.552022, rel=1e-3)
    assert loaded.energy_mj > 1.8 * zeroed.energy_mj


# ----- monotonicity --------------------------------------------------------------------------
def test_more_bits_never_cheaper():
    pairs = list(itertools.product(range(2, 9), range(2, 9)))
    for layer in random_layers(40, seed=3):
        costs = {(c.wbits, c.abits): c for c in MODEL.layer_costs(layer, pairs)}
        for (w, a), c in costs.items():
            for wider in ((w + 1, a), (w, a + 1)):
                if wider in costs:
                    assert costs[wider].latency_ms >= c.latency_ms, (layer, w, a, wider)
                    assert costs[wider].energy_mj >= c.energy_mj, (layer, w, a, wider)


def test_bigger_layer_never_faster():
    rng = np.random.default_rng(4)
    for layer in random_layers(60, seed=5):
        step = int(rng.choice([1, 8, 32]))
        bigger = []
        if layer.kind == "dw":
            bigger.append(dataclasses.replace(layer, in_channels=layer.in_channels + step,
                                              out_channels=layer.out_channels + step))
        else:
            bigger += [dataclasses.replace(layer, in_channels=layer.in_channels + step),
                       dataclasses.replace(layer, out_channels=layer.out_channels + step)]
        if layer.kind in ("conv", "dw"):
            bigger += [dataclasses.replace(layer, kernel=layer.kernel + 2),
                       dataclasses.replace(layer, in_h=layer.in_h + step, in_w=layer.in_w + step)]
        for w, a in ((8, 8), (4, 4), (6, 4)):
            base = MODEL.layer_cost(layer, w, a)
            for big in bigger:
                c = MODEL.layer_cost(big, w, a)
                assert c.latency_ms >= base.latency_ms, (layer, big, w, a)
                assert c.energy_mj >= base.energy_mj, (layer, big, w, a)


# ----- depthwise -------------------------------------------------------------------------------
def test_depthwise_uses_the_block_diagonal_mapping():
    cfg = MODEL.config
    for c_, k, s, h in ((96, 3, 2, 112), (576, 5, 1, 14), (1152, 7, 1, 7), (20, 3, 1, 9)):
        layer = ConvLayer("dw", c_, c_, k, s, h, h)
        for w, a in ((8, 8), (4, 4), (2, 2)):
            most = int(cfg.depthwise_block(cfg.perf_factor(w, a)))  # 8 lanes x pf, at most 32 columns
            c = MODEL.layer_cost(layer, w, a)
            block = c.fastest.depthwise_block
            assert block in cfg.depthwise_block_choices() and block <= most
            passes = layer.out_h * layer.out_w * k * k
            assert c.compute_cycles >= ceil_div(c_, most) * passes
            if c.tiling.out_channels == block and c_ % block == 0:
                assert c.compute_cycles == ceil_div(c_, block) * passes
    # the compute-bound 8-bit case the APQ release prices at ceil(C/8) * oh * ow * k^2 cycles
    c = MODEL.layer_cost(ConvLayer("dw", 96, 96, 3, 2, 112, 112), 8, 8)
    assert c.compute_cycles == 12 * 56 * 56 * 9 and c.fastest.depthwise_block == 8


def test_depthwise_blocks_run_as_separate_convolutions():
    """With depthwise_blocks_as_layers, C = n*g channels cost exactly n blocks of g."""
    for k, s, h, bits in ((3, 1, 56, 8), (5, 2, 14, 4), (7, 1, 7, 8)):
        block = int(MODEL.config.depthwise_block(MODEL.config.perf_factor(bits, bits)))
        one = MODEL.layer_cost(ConvLayer("dw", block, block, k, s, h, h), bits, bits)
        many = MODEL.layer_cost(ConvLayer("dw", 5 * block, 5 * block, k, s, h, h), bits, bits)
        assert many.cycles == 5 * one.cycles
        assert many.energy_mj == pytest.approx(5 * one.energy_mj)
        overlapped = BitFusionModel(BitFusionConfig(depthwise_blocks_as_layers=False))
        assert overlapped.layer_cost(many.layer, bits, bits).compute_cycles == many.compute_cycles


def test_depthwise_zero_weights_never_cost_less_than_gated_units():
    gated = BitFusionModel(BitFusionConfig(depthwise_zero_weights=False))
    for layer in [la for la in random_layers(60, seed=6) if la.kind == "dw"]:
        for w, a in ((8, 8), (4, 4), (2, 8)):
            stored, skipped = MODEL.layer_cost(layer, w, a), gated.layer_cost(layer, w, a)
            assert stored.latency_ms >= skipped.latency_ms and stored.energy_mj >= skipped.energy_mj
            if layer.out_channels >= 8:  # a block of g channels holds g*g*k^2 weights
                assert stored.least_energy.dram_bits > skipped.least_energy.dram_bits


def test_depthwise_is_not_priced_as_a_dense_conv():
    for c_, k, h in ((96, 3, 56), (384, 5, 14), (960, 7, 7)):
        dw = MODEL.layer_cost(ConvLayer("dw", c_, c_, k, 1, h, h), 8, 8)
        dense = MODEL.layer_cost(ConvLayer("conv", c_, c_, k, 1, h, h), 8, 8)
        assert dw.macs * c_ == dense.macs
        assert dw.latency_ms < dense.latency_ms and dw.energy_mj < dense.energy_mj
        # ...yet it uses the array badly: far fewer MACs per cycle than a pointwise layer
        pw = MODEL.layer_cost(ConvLayer("pw", c_, c_, 1, 1, h, h), 8, 8)
        assert dw.macs / dw.compute_cycles < 0.25 * pw.macs / pw.compute_cycles


def test_depthwise_cost_grows_with_kernel_area():
    costs = [MODEL.layer_cost(ConvLayer("dw", 240, 240, k, 1, 28, 28), 8, 8) for k in (3, 5, 7)]
    assert costs[0].compute_cycles * 25 == costs[1].compute_cycles * 9
    assert costs[0].latency_ms < costs[1].latency_ms < costs[2].latency_ms


# ----- magnitudes ------------------------------------------------------------------------------
def test_mobilenet_v2_in_the_published_range():
    """Paper (BitFusion, batch 1, 224x224): MobileNetV2 8-bit = 9.10 ms, 12.46 mJ (ours 9.87, 11.12)."""
    totals = MODEL.network_cost((layer, 8, 8) for layer in mobilenet_v2_layers())
    assert 0.8 < totals["latency_ms"] / 9.10 < 1.25
    assert 0.8 < totals["energy_mj"] / 12.46 < 1.25
    assert totals["macs"] == pytest.approx(300e6, rel=0.05)
    low = MODEL.network_cost((layer, 4, 4) for layer in mobilenet_v2_layers())
    assert low["latency_ms"] < totals["latency_ms"] and low["energy_mj"] < totals["energy_mj"]


def test_apq_release_entries_rank_and_magnitude():
    """The 26 per-layer entries of the APQ release's BitFusion LUT: rank order first, then magnitude
    (geometric-mean ratio ours/ref 1.00x latency, 0.86x energy; Spearman 0.995 / 0.992)."""
    cmp = compare_to_reference(MODEL)
    assert cmp["spearman_ms"] > 0.98 and cmp["spearman_mj"] > 0.98
    assert 0.8 < cmp["geo_ms"] < 1.25 and 0.8 < cmp["geo_mj"] < 1.25
    for (kind, bits), (n, g_ms, g_mj) in cmp["groups"].items():
        assert 0.7 < g_ms < 1.3 and 0.7 < g_mj < 1.3, (kind, bits, g_ms, g_mj)

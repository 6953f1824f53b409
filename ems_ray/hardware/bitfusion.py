"""An analytical BitFusion cost model: latency, energy and DRAM traffic of one layer at given bits.

How a layer runs (see docs/hardware.md for the reasoning and the checks):

* The array has N rows (reduction lanes) and M columns (output channels) of Fusion Units. Row
  inputs are broadcast across a row; each Fusion Unit reads its own weight buffer bank; partial
  sums flow down a column into that column's output-buffer bank. With w/a-bit operands a Fusion
  Unit does pf = floor(8/max(a,2)) * floor(8/max(w,2)) MACs per cycle, so a dense tile takes
  ceil(oc/M) * oh * ow * k^2 * ceil(ic/(N*pf)) cycles.
* A layer is cut into tiles (output channels x input channels x output rows x output columns)
  whose operands fit half of each buffer (the other half prefetches), and the tile loops run in
  one of the 3! orders. An operand is re-fetched from DRAM each time a loop that does not index
  it repeats, unless everything the inner loops touch stays resident; partial sums that cannot
  stay on chip across input-channel tiles spill to DRAM and come back.
* DRAM transfers overlap compute (double buffering): latency = first-tile fill
  + max(compute, remaining transfers) + last-tile drain.
* Energy = busy array cycles + SRAM reads/writes per bit + DRAM per bit + leakage over latency.

The (tiling, order) with the fewest cycles is chosen (ties: least energy) by evaluating every
candidate at once with numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Iterable, Sequence

import numpy as np

from .config import BitFusionConfig, ceil_div
from .layers import ConvLayer

DENSE_LOOPS = ("oc", "ic", "pixels")
DEPTHWISE_LOOPS = ("channels", "pixels")
# Loops whose index selects a different slice of each operand; the others reuse it.
INDEXED_BY = {
    "weight": frozenset({"oc", "ic", "channels"}),
    "input": frozenset({"ic", "pixels", "channels"}),
    "output": frozenset({"oc", "pixels", "channels"}),
}
DENSE_ORDERS = tuple(permutations(DENSE_LOOPS))
DEPTHWISE_ORDERS = tuple(permutations(DEPTHWISE_LOOPS))


@dataclass(frozen=True)
class Tiling:
    """Tile extents; for depthwise layers out_channels == in_channels (the channel tile)."""

    out_channels: int
    in_channels: int
    out_h: int
    out_w: int


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer at one (wbits, abits), batch 1."""

    layer: ConvLayer
    wbits: int
    abits: int
    latency_ms: float
    energy_mj: float
    cycles: int
    compute_cycles: int
    dram_bits: int
    macs: int
    tiling: Tiling
    loop_order: tuple[str, ...]  # outer -> inner
    energy_core_mj: float
    energy_sram_mj: float
    energy_dram_mj: float
    energy_leakage_mj: float

    @property
    def bitops(self) -> int:
        return self.macs * self.wbits * self.abits

    @property
    def memory_bound(self) -> bool:
        return self.cycles > self.compute_cycles * 1.05


def _tile_sizes(extent: int, unit: int) -> np.ndarray:
    """Tile extents to try along one axis: unit-multiples that are powers of two, even splits of
    the extent (which waste no partial tile), and the whole extent."""
    units = ceil_div(extent, unit)
    counts = {units}
    j = 1
    while j < units:
        counts |= {j, ceil_div(units, j)}
        j *= 2
    return np.asarray(sorted({min(extent, c * unit) for c in counts}), dtype=np.int64)


def _sum_ceil(extent, tile, unit):
    """Sum over the tiles of an axis of ceil(tile_extent / unit): array passes the tiles need."""
    return (extent // tile) * ceil_div(tile, unit) + ceil_div(extent % tile, unit)


def _input_span(out_extent: int, tile, stride: int, kernel: int, in_extent: int):
    """Input rows (or columns) fetched for one pass over all output tiles, halos included."""
    def span(t):
        return np.minimum(in_extent, (t - 1) * stride + kernel)

    rem = out_extent % tile
    return (out_extent // tile) * span(tile) + np.where(rem > 0, span(np.maximum(rem, 1)), 0)


def _reuse(order: Sequence[str], operand: str, tile_bits, capacity: int, trips: dict):
    """Walk the tile loops from inner to outer. While all data the inner loops touch fits the
    buffer it stays resident, so outer loops that do not index the operand reuse it; once it no
    longer fits, every outer loop that does not index it repeats the transfer.
    Returns the re-fetch multiplier and, per loop, whether the operand was still resident there."""
    resident = np.ones(np.shape(tile_bits), dtype=bool)
    footprint = tile_bits
    refetch = np.ones(np.shape(tile_bits), dtype=np.int64)
    resident_at = {}
    for loop in reversed(order):
        n = trips[loop]
        if loop in INDEXED_BY[operand]:
            grown = footprint * n
            resident = resident & (grown <= capacity)
            footprint = np.where(resident, grown, footprint)
        else:
            refetch = np.where(resident, refetch, refetch * n)
        resident_at[loop] = resident
    return refetch, resident_at


class BitFusionModel:
    """Prices layers on a BitFusion accelerator; pure numpy, no state besides the config."""

    def __init__(self, config: BitFusionConfig | None = None):
        self.config = config or BitFusionConfig()

    # ----- public API ----------------------------------------------------------------------
    def layer_cost(self, layer: ConvLayer, wbits: int, abits: int) -> LayerCost:
        """Cost of `layer` with wbits-bit weights and abits-bit input activations."""
        return self.layer_costs(layer, [(wbits, abits)])[0]

    def layer_costs(self, layer: ConvLayer, bit_pairs: Iterable[tuple[int, int]]) -> list[LayerCost]:
        """Costs for several (wbits, abits) pairs, evaluated together (what the LUT builder uses)."""
        pairs = [(int(w), int(a)) for w, a in bit_pairs]
        for w, a in pairs:
            self.config.check_bits(w, a)
        if not pairs:
            return []
        return self._evaluate(layer, np.asarray(pairs, dtype=np.int64))

    def network_cost(self, layers: Iterable[tuple[ConvLayer, int, int]]) -> dict[str, float]:
        """Summed latency_ms, energy_mj, macs, bitops of (layer, wbits, abits) items."""
        total = {"latency_ms": 0.0, "energy_mj": 0.0, "macs": 0, "bitops": 0}
        for layer, w, a in layers:
            c = self.layer_cost(layer, w, a)
            total["latency_ms"] += c.latency_ms
            total["energy_mj"] += c.energy_mj
            total["macs"] += c.macs
            total["bitops"] += c.bitops
        return total

    # ----- the model -------------------------------------------------------------------------
    def _candidates(self, layer: ConvLayer) -> dict[str, np.ndarray]:
        """Every (channel tile, input-channel tile, row tile, column tile) whose partial sums fit
        the output buffer; weight and input fit depends on the bits and is checked later."""
        cfg = self.config
        depthwise = layer.kind == "dw"
        oc = _tile_sizes(layer.out_channels, min(cfg.rows, cfg.columns) if depthwise else cfg.columns)
        ic = np.zeros(1, dtype=np.int64) if depthwise else _tile_sizes(layer.in_channels, cfg.rows)
        oh = _tile_sizes(layer.out_h, 1)
        ow = _tile_sizes(layer.out_w, 1)
        grid = np.stack(np.meshgrid(np.arange(len(oc)), np.arange(len(ic)), np.arange(len(oh)),
                                    np.arange(len(ow)), indexing="ij"), axis=-1).reshape(-1, 4)
        cand = {"oc": oc[grid[:, 0]], "ic": ic[grid[:, 1]], "oh": oh[grid[:, 2]], "ow": ow[grid[:, 3]]}
        if depthwise:
            cand["ic"] = cand["oc"]
        psum_tile = ceil_div(cand["oc"], cfg.columns) * cfg.columns * cand["oh"] * cand["ow"] * cfg.partial_sum_bits
        keep = psum_tile <= cfg.buffer_bits("output")
        if not keep.any():
            raise ValueError(f"{layer.describe()}: no tile's partial sums fit the output buffer")
        return {k: v[keep][None, :] for k, v in cand.items()}

    def _evaluate(self, layer: ConvLayer, bits: np.ndarray) -> list[LayerCost]:
        cfg = self.config
        t = self._candidates(layer)
        wb = bits[:, 0:1]
        ab = bits[:, 1:2]
        depthwise = layer.kind == "dw"
        k2 = layer.kernel * layer.kernel
        pixels = layer.out_h * layer.out_w
        pf = cfg.perf_factor(wb, ab)

        # ----- compute cycles --------------------------------------------------------------
        if depthwise:
            # Block-diagonal mapping: g channels on g columns and g reduction lanes, one tap per
            # pass, zero weights off the diagonal (rows broadcast one input to every column).
            block = np.minimum(cfg.columns, cfg.rows * pf)
            compute = _sum_ceil(layer.out_channels, t["oc"], block) * pixels * k2
            lanes = np.minimum(block, layer.out_channels)
            issued_macs = compute * lanes * lanes
            act_reads = compute * lanes * ab
            reduction_passes = 1
        else:
            column_groups = _sum_ceil(layer.out_channels, t["oc"], cfg.columns)
            compute = column_groups * pixels * k2 * _sum_ceil(layer.in_channels, t["ic"], cfg.rows * pf)
            issued_macs = np.full_like(compute, layer.macs)
            act_reads = column_groups * pixels * k2 * layer.in_channels * ab
            reduction_passes = ceil_div(layer.in_channels, t["ic"])

        # ----- tile footprints -----------------------------------------------------------
        in_rows = np.minimum(layer.in_h, (t["oh"] - 1) * layer.stride + layer.kernel)
        in_cols = np.minimum(layer.in_w, (t["ow"] - 1) * layer.stride + layer.kernel)
        filters_per_tile = t["oc"] if depthwise else t["oc"] * t["ic"]
        weight_tile = filters_per_tile * k2 * wb
        input_tile = t["ic"] * in_rows * in_cols * ab
        psum_tile = ceil_div(t["oc"], cfg.columns) * cfg.columns * t["oh"] * t["ow"] * cfg.partial_sum_bits
        fits = (weight_tile <= cfg.buffer_bits("weight")) & (input_tile <= cfg.buffer_bits("activation"))

        # ----- DRAM traffic per loop order -----------------------------------------------
        n_oc = ceil_div(layer.out_channels, t["oc"])
        n_pix = ceil_div(layer.out_h, t["oh"]) * ceil_div(layer.out_w, t["ow"])
        trips = {"oc": n_oc, "channels": n_oc, "ic": ceil_div(layer.in_channels, t["ic"]), "pixels": n_pix}
        weights_once = layer.weights * wb
        inputs_whole = layer.in_channels * layer.in_h * layer.in_w * ab
        inputs_halo = (layer.in_channels * ab
                       * _input_span(layer.out_h, t["oh"], layer.stride, layer.kernel, layer.in_h)
                       * _input_span(layer.out_w, t["ow"], layer.stride, layer.kernel, layer.in_w))
        outputs = layer.out_channels * pixels
        orders = DEPTHWISE_ORDERS if depthwise else DENSE_ORDERS
        caps = {name: cfg.buffer_bits(buf) for name, buf in
                (("weight", "weight"), ("input", "activation"), ("output", "output"))}
        weight_bits, input_bits, spill_passes = [], [], []
        for order in orders:
            w_refetch, _ = _reuse(order, "weight", weight_tile, caps["weight"], trips)
            a_refetch, a_resident = _reuse(order, "input", input_tile, caps["input"], trips)
            o_refetch, _ = _reuse(order, "output", psum_tile, caps["output"], trips)
            weight_bits.append(weights_once * w_refetch)
            inputs_once = np.where(a_resident["pixels"], inputs_whole, inputs_halo)
            input_bits.append(inputs_once * a_refetch)
            spill_passes.append(np.broadcast_to(o_refetch - 1, weight_bits[-1].shape))
        # stack orders on axis 1: (bit pairs, orders, candidates)
        weight_bits = np.stack(weight_bits, 1)
        input_bits = np.stack(input_bits, 1)
        spill_passes = np.stack(spill_passes, 1)
        output_bits = outputs * (cfg.output_bits + spill_passes * 2 * cfg.partial_sum_bits)
        dram_bits = weight_bits + input_bits + output_bits

        # ----- latency: fill + max(compute, overlapped transfers) + drain ------------------
        bw = cfg.dram_bits_per_cycle
        fill = (weight_tile + input_tile)[:, None, :]
        drain = (t["oc"] * t["oh"] * t["ow"] * cfg.output_bits)[:, None, :]
        middle = np.maximum(dram_bits - fill - drain, 0)
        compute3 = np.broadcast_to(compute[:, None, :], dram_bits.shape)
        cycles = ceil_div(fill, bw) + np.maximum(compute3, ceil_div(middle, bw)) + ceil_div(drain, bw)
        cycles = np.where(fits[:, None, :], cycles, np.iinfo(np.int64).max)

        # ----- energy (pJ) -----------------------------------------------------------------
        e_core = compute3 * cfg.core_pj_per_cycle
        # Each reduction pass read-modify-writes every partial sum; spilled sums are written back in.
        psum_rmw = (outputs * cfg.partial_sum_bits * np.broadcast_to(reduction_passes, t["oc"].shape))[:, None, :]
        e_sram = (
            weight_bits * cfg.weight_sram_write_pj_per_bit
            + (issued_macs * wb)[:, None, :] * cfg.weight_sram_read_pj_per_bit
            + input_bits * cfg.activation_sram_write_pj_per_bit
            + act_reads[:, None, :] * cfg.activation_sram_read_pj_per_bit
            + psum_rmw * cfg.output_sram_read_pj_per_bit
            + (psum_rmw + outputs * spill_passes * cfg.partial_sum_bits) * cfg.output_sram_write_pj_per_bit
        )
        e_dram = dram_bits * cfg.dram_pj_per_bit
        e_leak = cycles * (cfg.leakage_nj_per_cycle * 1e3)
        energy = e_core + e_sram + e_dram + e_leak

        # ----- choose per bit pair: fewest cycles, then least energy -------------------------
        flat_cycles = cycles.reshape(len(bits), -1)
        flat_energy = energy.reshape(len(bits), -1)
        best_cycles = flat_cycles.min(axis=1, keepdims=True)
        if np.any(best_cycles == np.iinfo(np.int64).max):
            raise ValueError(f"{layer.describe()}: no tiling fits the buffers")
        best = np.where(flat_cycles == best_cycles, flat_energy, np.inf).argmin(axis=1)
        n_cand = cycles.shape[2]
        results = []
        for b, idx in enumerate(best):
            o, c = divmod(int(idx), n_cand)

            def pick(arr):
                arr = np.asarray(arr)
                if arr.ndim == 3:
                    return arr[b if arr.shape[0] > 1 else 0, o, c]
                return arr[b if arr.shape[0] > 1 else 0, c]

            to_mj = 1e-9
            results.append(LayerCost(
                layer=layer, wbits=int(bits[b, 0]), abits=int(bits[b, 1]),
                latency_ms=float(cfg.cycles_to_ms(int(pick(cycles)))),
                energy_mj=float(pick(energy)) * to_mj,
                cycles=int(pick(cycles)), compute_cycles=int(pick(compute)),
                dram_bits=int(pick(dram_bits)), macs=layer.macs,
                tiling=Tiling(int(pick(t["oc"])), int(pick(t["ic"])), int(pick(t["oh"])), int(pick(t["ow"]))),
                loop_order=orders[o],
                energy_core_mj=float(pick(e_core)) * to_mj, energy_sram_mj=float(pick(e_sram)) * to_mj,
                energy_dram_mj=float(pick(e_dram)) * to_mj, energy_leakage_mj=float(pick(e_leak)) * to_mj,
            ))
        return results

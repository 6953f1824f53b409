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
  stay on chip across input-channel tiles spill to DRAM and come back. By default
  (`load_partial_sums`) every output tile's 32-bit accumulators are also loaded from DRAM before
  its first pass, as the authors' simulator does, so each output crosses the interface twice.
* Depthwise layers use a block-diagonal mapping (`_depthwise_cycles`): ceil(C/g) * oh * ow * k^2
  cycles with g = min(M, lanes*pf) channels per pass (lanes = 8 by default, as the APQ release's
  entries are priced), because a row broadcasts one input to all columns. Off-diagonal units
  hold zero weights, and each block runs as a convolution of its own (`_evaluate_depthwise`).
* DRAM transfers overlap compute (double buffering): latency = first-tile fill
  + max(compute + per-tile pipeline fill/drain, remaining transfers) + last-tile drain.
* Energy = busy array cycles + SRAM reads/writes per bit + DRAM per bit + leakage over latency.

Every (tiling, order) candidate is evaluated at once with numpy; latency is that of the fastest
(ties: least energy), energy that of the least-energy one (see `LayerCost`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import permutations
from typing import Iterable, Sequence

import numpy as np

from ems_ray.errors import InputError

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
class Schedule:
    """One way to run a layer: tiling and loop order, with what it costs."""

    tiling: Tiling
    loop_order: tuple[str, ...]  # outer -> inner
    cycles: int
    compute_cycles: int  # MAC passes of the array: the formula in the module docstring
    array_cycles: int  # compute_cycles plus the per-tile pipeline fill/drain
    memory_cycles: int  # all DRAM transfers back to back
    dram_bits: int
    energy_mj: float
    energy_core_mj: float
    energy_sram_mj: float
    energy_dram_mj: float
    energy_leakage_mj: float
    depthwise_block: int = 0  # channels per depthwise pass (0 for dense layers)


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer at one (wbits, abits), batch 1.

    latency comes from the fastest schedule, energy from the least-energy one: a compiler tuned
    for the budget at hand (the paper constrains latency or energy) would pick that schedule, and
    taking each as a minimum keeps both monotone in the bit-widths. They are usually the same
    schedule; memory-bound layers always tie.
    """

    layer: ConvLayer
    wbits: int
    abits: int
    latency_ms: float
    energy_mj: float
    macs: int
    fastest: Schedule
    least_energy: Schedule

    @property
    def cycles(self) -> int:
        return self.fastest.cycles

    @property
    def compute_cycles(self) -> int:
        return self.fastest.compute_cycles

    @property
    def dram_bits(self) -> int:
        return self.fastest.dram_bits

    @property
    def tiling(self) -> Tiling:
        return self.fastest.tiling

    @property
    def loop_order(self) -> tuple[str, ...]:
        return self.fastest.loop_order

    @property
    def bitops(self) -> int:
        return self.macs * self.wbits * self.abits

    @property
    def memory_bound(self) -> bool:
        """The fastest schedule's DRAM transfers take longer than its array work."""
        return self.fastest.memory_cycles > self.fastest.array_cycles


# Tile extents, in units of the axis' natural granularity: powers of two and 1.5x powers of two.
# The set does not depend on the layer, so a layer that is smaller along an axis can always use
# (a clipped copy of) any tile a larger one uses: the chosen cost never grows when a layer shrinks.
TILE_STEPS = tuple(sorted({2 ** i for i in range(14)} | {3 * 2 ** i for i in range(13)}))


def _tile_sizes(extent: int, unit: int, fine: bool = False) -> np.ndarray:
    """Tile extents to try along one axis: unit * TILE_STEPS below the extent, and the extent;
    `fine` adds sub-unit powers of two for layers whose smallest regular tile does not fit."""
    sizes = {unit * s for s in TILE_STEPS if unit * s < extent} | {extent}
    if fine:
        sizes |= {2 ** i for i in range(unit.bit_length()) if 2 ** i < min(unit, extent)}
    return np.asarray(sorted(sizes), dtype=np.int64)


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


def _sum_schedules(parts: Sequence[tuple[int, Schedule]]) -> Schedule:
    """Schedules run back to back (count x schedule each): costs add; the tiling and loop order
    reported are the first part's (a full depthwise block)."""
    first = parts[0][1]

    def total(name):
        return sum(n * getattr(s, name) for n, s in parts)

    return Schedule(
        tiling=first.tiling, loop_order=first.loop_order, cycles=total("cycles"),
        compute_cycles=total("compute_cycles"), array_cycles=total("array_cycles"),
        memory_cycles=total("memory_cycles"), dram_bits=total("dram_bits"), energy_mj=total("energy_mj"),
        energy_core_mj=total("energy_core_mj"), energy_sram_mj=total("energy_sram_mj"),
        energy_dram_mj=total("energy_dram_mj"), energy_leakage_mj=total("energy_leakage_mj"),
        depthwise_block=first.depthwise_block,
    )


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
        bits = np.asarray(pairs, dtype=np.int64)
        if layer.kind == "dw":
            return self._evaluate_depthwise(layer, bits)
        return self._evaluate(layer, bits)

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
    def _candidates(self, layer: ConvLayer, fine: bool = False) -> dict[str, np.ndarray]:
        """Every (channel tile, input-channel tile, row tile, column tile) whose partial sums fit
        the output buffer; weight and input fit depends on the bits and is checked later."""
        cfg = self.config
        depthwise = layer.kind == "dw"
        oc = _tile_sizes(layer.out_channels, min(cfg.rows, cfg.columns) if depthwise else cfg.columns, fine)
        ic = np.zeros(1, dtype=np.int64) if depthwise else _tile_sizes(layer.in_channels, cfg.rows, fine)
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
            raise InputError(f"{layer.describe()}: no tile's partial sums fit the output buffer")
        return {k: v[keep][None, :] for k, v in cand.items()}

    def _depthwise_cycles(self, layer: ConvLayer, channel_tile: np.ndarray, block: np.ndarray):
        """Array passes of a depthwise layer, and the reduction lanes each pass uses.

        Block-diagonal mapping: a block of g <= min(M, lanes*pf) channels runs as a dense g->g
        conv whose weights are zero off the diagonal. As for dense layers (the K^2 factor of the
        cycle formula), kernel taps iterate in time and the reduction lanes carry channels: in one
        pass the lanes hold one tap of the g channels, column j keeps only its own channel's
        product. This is exact on BitFusion, whose rows broadcast one input to every column (a
        plain 'channel per column' mapping would need a different input per column). With
        `depthwise_zero_weights` (default) the off-diagonal zeros are stored, fetched and read like
        any weight, since BitFusion has no per-unit gating; otherwise they are assumed gated.
        """
        cycles = _sum_ceil(layer.out_channels, channel_tile, block) * layer.out_h * layer.out_w * layer.kernel ** 2
        return cycles, np.minimum(block, layer.out_channels)

    def _evaluate_depthwise(self, layer: ConvLayer, bits: np.ndarray) -> list[LayerCost]:
        """A depthwise layer: the best block size g, and (with `depthwise_blocks_as_layers`) the
        layer run as C//g convolutions of g channels plus one of the C%g left over, back to back.

        The block size is a choice of the compiler: any g in `depthwise_block_choices` up to
        `depthwise_block(pf)` works (smaller blocks waste more passes but fetch fewer zero weights).
        The choices at more bits are a subset of those at fewer, and the cost of each choice grows
        with bits and channels (sums of per-block minima are the minima of the sums), so both
        reported numbers stay monotone. The authors' simulator has no grouped convolution; the APQ
        release prices depthwise layers as separate g-channel convolutions, each paying its own
        first loads and last stores.
        """
        cfg = self.config
        channels = layer.out_channels
        limit = np.broadcast_to(cfg.depthwise_block(cfg.perf_factor(bits[:, 0], bits[:, 1])), len(bits))
        fastest: list[Schedule | None] = [None] * len(bits)
        thrifty: list[Schedule | None] = [None] * len(bits)
        for block in cfg.depthwise_block_choices():  # ascending
            rows = np.flatnonzero(limit >= block)
            if not rows.size:
                break
            if cfg.depthwise_blocks_as_layers and block < channels:
                full, rest = divmod(channels, block)
                sizes = [(full, block), (1, rest)] if rest else [(full, block)]
            else:
                sizes = [(1, channels)]
            parts = [(count, self._evaluate(replace(layer, in_channels=c, out_channels=c), bits[rows], dw_block=block))
                     for count, c in sizes]
            for j, row in enumerate(rows):
                fast = _sum_schedules([(n, costs[j].fastest) for n, costs in parts])
                frugal = _sum_schedules([(n, costs[j].least_energy) for n, costs in parts])
                best = fastest[row]
                if best is None or (fast.cycles, fast.energy_mj) < (best.cycles, best.energy_mj):
                    fastest[row] = fast
                if thrifty[row] is None or frugal.energy_mj < thrifty[row].energy_mj:
                    thrifty[row] = frugal
            if block >= channels:  # larger blocks hold the same single block
                break
        return [
            LayerCost(layer=layer, wbits=int(bits[b, 0]), abits=int(bits[b, 1]),
                      latency_ms=float(cfg.cycles_to_ms(fastest[b].cycles)), energy_mj=thrifty[b].energy_mj,
                      macs=layer.macs, fastest=fastest[b], least_energy=thrifty[b])
            for b in range(len(bits))
        ]

    def _evaluate(self, layer: ConvLayer, bits: np.ndarray, fine: bool = False,
                  dw_block: int | None = None) -> list[LayerCost]:
        """All schedules of one layer at once; dw_block: channels per depthwise pass (default: the most
        the bits allow)."""
        cfg = self.config
        t = self._candidates(layer, fine)
        wb = bits[:, 0:1]
        ab = bits[:, 1:2]
        depthwise = layer.kind == "dw"
        k2 = layer.kernel * layer.kernel
        pixels = layer.out_h * layer.out_w
        pf = cfg.perf_factor(wb, ab)

        # ----- compute cycles --------------------------------------------------------------
        if depthwise:
            block = cfg.depthwise_block(pf) if dw_block is None else np.minimum(dw_block, cfg.depthwise_block(pf))
            compute, lanes_used = self._depthwise_cycles(layer, t["oc"], block)
            act_reads = compute * lanes_used * ab
            reduction_passes = 1
        else:
            column_groups = _sum_ceil(layer.out_channels, t["oc"], cfg.columns)
            compute = column_groups * pixels * k2 * _sum_ceil(layer.in_channels, t["ic"], cfg.rows * pf)
            act_reads = column_groups * pixels * k2 * layer.in_channels * ab
            reduction_passes = ceil_div(layer.in_channels, t["ic"])

        # ----- tile footprints -----------------------------------------------------------
        in_rows = np.minimum(layer.in_h, (t["oh"] - 1) * layer.stride + layer.kernel)
        in_cols = np.minimum(layer.in_w, (t["ow"] - 1) * layer.stride + layer.kernel)
        if depthwise:
            # Block-diagonal: a tile of oc channels in blocks of g. Each output channel's column holds,
            # per kernel tap, its own weight plus the zeros of the other min(oc, g) - 1 lanes of its
            # block when off-diagonal units are not gated (depthwise_zero_weights).
            zeros_per_filter = np.minimum(t["oc"], block) if cfg.depthwise_zero_weights else 1
            filters_per_tile = t["oc"] * zeros_per_filter
        else:
            filters_per_tile = t["oc"] * t["ic"]
        weight_tile = filters_per_tile * k2 * wb
        input_tile = t["ic"] * in_rows * in_cols * ab
        psum_tile = ceil_div(t["oc"], cfg.columns) * cfg.columns * t["oh"] * t["ow"] * cfg.partial_sum_bits
        fits = (weight_tile <= cfg.buffer_bits("weight")) & (input_tile <= cfg.buffer_bits("activation"))

        # ----- DRAM traffic per loop order -----------------------------------------------
        n_oc = ceil_div(layer.out_channels, t["oc"])
        n_pix = ceil_div(layer.out_h, t["oh"]) * ceil_div(layer.out_w, t["ow"])
        trips = {"oc": n_oc, "channels": n_oc, "ic": ceil_div(layer.in_channels, t["ic"]), "pixels": n_pix}
        if depthwise and cfg.depthwise_zero_weights:
            full, rest = layer.out_channels // t["oc"], layer.out_channels % t["oc"]
            stored = full * t["oc"] * np.minimum(t["oc"], block) + rest * np.minimum(rest, block)
            weights_once = stored * k2 * wb
            weight_reads = layer.macs * np.minimum(t["oc"], block) * wb  # every unit of the block reads
        else:
            weights_once = layer.weights * wb
            weight_reads = np.broadcast_to(layer.macs * wb, np.broadcast_shapes(np.shape(wb), t["oc"].shape))
        inputs_whole = layer.in_channels * layer.in_h * layer.in_w * ab
        inputs_halo = (layer.in_channels * ab
                       * _input_span(layer.out_h, t["oh"], layer.stride, layer.kernel, layer.in_h)
                       * _input_span(layer.out_w, t["ow"], layer.stride, layer.kernel, layer.in_w))
        outputs = layer.out_channels * pixels
        orders = DEPTHWISE_ORDERS if depthwise else DENSE_ORDERS
        caps = {"weight": cfg.buffer_bits("weight"), "input": cfg.buffer_bits("activation"),
                "output": cfg.buffer_bits("output")}
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
        # Partial sums: every extra pass stores and (re)loads them; with load_partial_sums the first
        # pass loads them too, so each pass moves them in and out (o_refetch = spill_passes + 1).
        psum_loads = spill_passes + (1 if cfg.load_partial_sums else 0)
        output_bits = outputs * (cfg.output_bits + (spill_passes + psum_loads) * cfg.partial_sum_bits)
        dram_bits = weight_bits + input_bits + output_bits

        # ----- latency: fill + max(compute, overlapped transfers) + drain ------------------
        bw = cfg.dram_bits_per_cycle
        fill = (weight_tile + input_tile + (psum_tile if cfg.load_partial_sums else 0))[:, None, :]
        drain = (t["oc"] * t["oh"] * t["ow"] * cfg.output_bits)[:, None, :]
        middle = np.maximum(dram_bits - fill - drain, 0)
        compute3 = np.broadcast_to(compute[:, None, :], dram_bits.shape)
        n_tiles = n_oc * n_pix * (1 if depthwise else trips["ic"])
        array_busy = compute3 + (n_tiles * cfg.tile_overhead)[:, None, :]
        cycles = ceil_div(fill, bw) + np.maximum(array_busy, ceil_div(middle, bw)) + ceil_div(drain, bw)
        cycles = np.where(fits[:, None, :], cycles, np.iinfo(np.int64).max)

        # ----- energy (pJ) -----------------------------------------------------------------
        e_core = compute3 * cfg.core_pj_per_cycle
        # Each reduction pass read-modify-writes every partial sum; spilled sums are written back in.
        psum_rmw = (outputs * cfg.partial_sum_bits * np.broadcast_to(reduction_passes, t["oc"].shape))[:, None, :]
        e_sram = (
            weight_bits * cfg.weight_sram_write_pj_per_bit
            + weight_reads[:, None, :] * cfg.weight_sram_read_pj_per_bit
            + input_bits * cfg.activation_sram_write_pj_per_bit
            + act_reads[:, None, :] * cfg.activation_sram_read_pj_per_bit
            + psum_rmw * cfg.output_sram_read_pj_per_bit
            + (psum_rmw + outputs * psum_loads * cfg.partial_sum_bits) * cfg.output_sram_write_pj_per_bit
        )
        e_dram = dram_bits * cfg.dram_pj_per_bit
        e_leak = cycles * (cfg.leakage_nj_per_cycle * 1e3)
        energy = np.where(fits[:, None, :], e_core + e_sram + e_dram + e_leak, np.inf)

        # ----- choose per bit pair ---------------------------------------------------------
        # Fastest: fewest cycles, exact ties broken by energy. Least energy: fewest pJ. Each is a
        # minimum of a quantity every candidate grows with bits, over a candidate set that shrinks
        # with bits, so both reported numbers are monotone in wbits and abits.
        n_bits = len(bits)
        flat_cycles = cycles.reshape(n_bits, -1)
        flat_energy = energy.reshape(n_bits, -1)
        best_cycles = flat_cycles.min(axis=1, keepdims=True)
        if np.any(best_cycles == np.iinfo(np.int64).max):
            if not fine:  # huge kernels: retry with channel tiles narrower than the array
                return self._evaluate(layer, bits, fine=True, dw_block=dw_block)
            raise InputError(f"{layer.describe()}: no tiling fits the buffers")
        fastest = np.where(flat_cycles == best_cycles, flat_energy, np.inf).argmin(axis=1)
        frugal = flat_energy.argmin(axis=1)
        n_cand = cycles.shape[2]
        dw_blocks = np.broadcast_to(np.asarray(block).reshape(-1), n_bits) if depthwise else np.zeros(n_bits, int)
        fields = {"cycles": cycles, "compute": compute, "array": array_busy, "dram": dram_bits,
                  "core": e_core, "sram": e_sram,
                  "dram_e": e_dram, "leak": e_leak, "energy": energy, **{f"t_{k}": v for k, v in t.items()}}

        def schedule(b: int, flat_index: int) -> Schedule:
            o, c = divmod(int(flat_index), n_cand)

            def pick(name):
                arr = np.asarray(fields[name])
                row = b if arr.shape[0] > 1 else 0
                return arr[row, o, c] if arr.ndim == 3 else arr[row, c]

            return Schedule(
                tiling=Tiling(int(pick("t_oc")), int(pick("t_ic")), int(pick("t_oh")), int(pick("t_ow"))),
                loop_order=orders[o], cycles=int(pick("cycles")), compute_cycles=int(pick("compute")),
                array_cycles=int(pick("array")), memory_cycles=int(ceil_div(int(pick("dram")), bw)),
                dram_bits=int(pick("dram")), energy_mj=float(pick("energy")) * 1e-9,
                energy_core_mj=float(pick("core")) * 1e-9, energy_sram_mj=float(pick("sram")) * 1e-9,
                energy_dram_mj=float(pick("dram_e")) * 1e-9, energy_leakage_mj=float(pick("leak")) * 1e-9,
                depthwise_block=int(dw_blocks[b]),
            )

        results = []
        for b in range(n_bits):
            fast = schedule(b, fastest[b])
            thrifty = fast if frugal[b] == fastest[b] else schedule(b, frugal[b])
            results.append(LayerCost(
                layer=layer, wbits=int(bits[b, 0]), abits=int(bits[b, 1]),
                latency_ms=float(cfg.cycles_to_ms(fast.cycles)), energy_mj=thrifty.energy_mj,
                macs=layer.macs, fastest=fast, least_energy=thrifty,
            ))
        return results

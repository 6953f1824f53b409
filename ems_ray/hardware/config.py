"""Parameters of the BitFusion accelerator (Sharma et al., ISCA 2018) that the cost model reads.

Defaults are the published configuration (16x32 Fusion Units, 500 MHz, 45 nm energy figures);
change them to explore other BitFusion-like designs. Every LUT records a hash of this object so a
table built for one configuration is never read as if it were for another.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ems_ray.errors import InputError

if TYPE_CHECKING:  # numpy is imported where used: a run config (its `hardware` section) loads without it
    import numpy as np

KIB_BITS = 1024 * 8


class BitFusionConfig(BaseModel):
    """One BitFusion configuration: array shape, memories, and the energy of each event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # ----- compute array -----------------------------------------------------------------
    rows: int = Field(16, ge=1, description="N: Fusion-Unit rows; the reduction (input) axis")
    columns: int = Field(32, ge=1, description="M: Fusion-Unit columns; one output channel each")
    frequency_mhz: float = Field(500.0, gt=0, description="clock of the array and its buffers")
    max_bits: int = Field(8, ge=2, le=16, description="widest operand a Fusion Unit takes in one pass")
    min_bits: int = Field(2, ge=1, le=8, description="BitBrick width; narrower operands run at this width")
    tile_overhead_cycles: int | None = Field(
        None, ge=0,
        description="array cycles each tile spends filling and draining the systolic pipeline; "
        "None means rows + columns (the usual systolic fold overhead)",
    )
    # ----- memories ----------------------------------------------------------------------
    dram_bits_per_cycle: int = Field(192, ge=1, description="DRAM interface width per array cycle")
    weight_sram_kib: float = Field(64.0, gt=0, description="weight buffer (WBUF), both halves")
    activation_sram_kib: float = Field(32.0, gt=0, description="input buffer (IBUF), both halves")
    output_sram_kib: float = Field(16.0, gt=0, description="output buffer (OBUF), both halves")
    double_buffered: bool = Field(True, description="a tile may use half of each buffer; the other half prefetches")
    partial_sum_bits: int = Field(32, ge=8, le=64, description="accumulator width held in the OBUF")
    output_bits: int = Field(
        32, ge=1, le=64,
        description="bits per output element written back to DRAM; 32 follows the authors' simulator "
        "(unquantized partial sums leave the chip), 8 models on-chip requantization",
    )
    load_partial_sums: bool = Field(
        True,
        description="every output tile's partial_sum_bits accumulators are read from DRAM into the OBUF "
        "before each of its reduction passes, the first included (the accumulator starts from memory, "
        "e.g. the bias): the authors' simulator pairs an 'Out RD' with every 'Out WR', so each output "
        "crosses the DRAM interface twice per pass. False starts accumulators at zero on chip and reads "
        "partial sums back only when a split reduction resumes",
    )
    depthwise_lanes: int | None = Field(
        8, ge=1,
        description="reduction lanes (rows) one depthwise pass packs channels into at max_bits; "
        "g = min(columns, lanes * pf) channels per pass. 8 reproduces the APQ release's BitFusion "
        "entries (ceil(C/8)*oh*ow*k^2 cycles at 8 bits, C/32 at 4 bits); None = all rows "
        "(the block-diagonal upper bound, 16 at 8 bits)",
    )
    depthwise_zero_weights: bool = Field(
        True,
        description="the off-diagonal Fusion Units of a depthwise block hold zero weights: BitFusion has "
        "no per-unit gating or zero skipping and fills its weight buffer only from DRAM, so a g-channel "
        "block stores, fetches and reads g*g*k^2 weights (as the authors' simulator does for the g->g "
        "convolution it prices); False assumes off-diagonal units are gated and hold nothing",
    )
    depthwise_blocks_as_layers: bool = Field(
        True,
        description="each block of g depthwise channels is scheduled as a convolution of its own, with its "
        "own first-tile loads and last-tile stores (the authors' simulator has no grouped convolution, and "
        "the APQ release prices a depthwise layer as ceil(C/g) g-channel convolutions); False overlaps "
        "blocks like the tiles of one layer",
    )
    # ----- energy (45 nm, from the BitFusion paper and its simulator's CACTI numbers) ------
    core_pj_per_cycle: float = Field(235.1, ge=0, description="dynamic energy of the busy array per cycle")
    weight_sram_read_pj_per_bit: float = Field(0.021, ge=0)
    weight_sram_write_pj_per_bit: float = Field(0.029, ge=0)
    activation_sram_read_pj_per_bit: float = Field(0.059, ge=0)
    activation_sram_write_pj_per_bit: float = Field(0.114, ge=0)
    output_sram_read_pj_per_bit: float = Field(0.033, ge=0)
    output_sram_write_pj_per_bit: float = Field(0.073, ge=0)
    dram_pj_per_bit: float = Field(15.0, ge=0)
    leakage_nj_per_cycle: float = Field(0.46, ge=0, description="whole-chip leakage, charged over latency")

    @model_validator(mode="after")
    def _consistent(self) -> BitFusionConfig:
        if self.min_bits > self.max_bits:
            raise InputError(f"min_bits ({self.min_bits}) must be <= max_bits ({self.max_bits})")
        if self.partial_sum_bits < 2 * self.max_bits:
            raise InputError(
                f"partial_sum_bits ({self.partial_sum_bits}) must hold a {self.max_bits}x{self.max_bits}-bit "
                f"product: at least {2 * self.max_bits}"
            )
        if self.depthwise_lanes is not None and self.depthwise_lanes > self.rows:
            raise InputError(f"depthwise_lanes ({self.depthwise_lanes}) must be <= rows ({self.rows})")
        for name in ("weight", "activation", "output"):
            bits = self.buffer_bits(name)
            if bits < self.max_bits * self.columns:
                raise InputError(f"{name}_sram_kib: {bits} usable bits cannot hold one row of operands")
        return self

    # ----- derived facts -----------------------------------------------------------------
    def buffer_bits(self, name: str) -> int:
        """Bits one tile may occupy in the 'weight', 'activation' or 'output' buffer."""
        kib = {"weight": self.weight_sram_kib, "activation": self.activation_sram_kib,
               "output": self.output_sram_kib}[name]
        return int(kib * KIB_BITS) // (2 if self.double_buffered else 1)

    def perf_factor(self, wbits: int | np.ndarray, abits: int | np.ndarray) -> int | np.ndarray:
        """MACs one Fusion Unit does per cycle: floor(8/max(a,2)) * floor(8/max(w,2)); 6 bits run as 8."""
        import numpy as np

        w = np.maximum(wbits, self.min_bits)
        a = np.maximum(abits, self.min_bits)
        pf = (self.max_bits // a) * (self.max_bits // w)
        return int(pf) if np.ndim(pf) == 0 else pf

    def check_bits(self, wbits: int, abits: int) -> None:
        for name, bits in (("wbits", wbits), ("abits", abits)):
            if not (1 <= bits <= self.max_bits) or int(bits) != bits:
                raise InputError(f"{name}: {bits} not supported; allowed values: 1..{self.max_bits}")

    @property
    def tile_overhead(self) -> int:
        return self.rows + self.columns if self.tile_overhead_cycles is None else self.tile_overhead_cycles

    def depthwise_block(self, pf):
        """Channels one depthwise pass carries: min(columns, lanes * pf)."""
        lanes = self.rows if self.depthwise_lanes is None else self.depthwise_lanes
        import numpy as np

        return np.minimum(self.columns, lanes * pf)

    def depthwise_block_choices(self) -> list[int]:
        """Every block size `depthwise_block` can return, ascending: a compiler may use any of them
        up to the bits' own, so fewer bits never offer fewer choices."""
        pfs = {self.perf_factor(w, a) for w in range(1, self.max_bits + 1) for a in range(1, self.max_bits + 1)}
        return sorted({int(self.depthwise_block(pf)) for pf in pfs})

    @property
    def peak_macs_per_cycle(self) -> int:
        """At max_bits; multiply by `perf_factor` for narrower operands."""
        return self.rows * self.columns

    def cycles_to_ms(self, cycles: float | np.ndarray) -> float | np.ndarray:
        return cycles / (self.frequency_mhz * 1e3)

    def config_hash(self) -> str:
        """Stable hash of every parameter; LUT files record it."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    def describe(self) -> str:
        peak_tops = self.peak_macs_per_cycle * self.frequency_mhz * 1e6 * 2 / 1e12
        return (
            f"BitFusion {self.rows}x{self.columns} @ {self.frequency_mhz:g} MHz "
            f"({peak_tops:.2f} TOPS at {self.max_bits} bit, "
            f"x{self.perf_factor(self.min_bits, self.min_bits)} at {self.min_bits} bit), "
            f"DRAM {self.dram_bits_per_cycle} b/cycle, SRAM W/A/O {self.weight_sram_kib:g}/"
            f"{self.activation_sram_kib:g}/{self.output_sram_kib:g} KiB"
            f"{' double-buffered' if self.double_buffered else ''}"
        )


def ceil_div(a, b):
    """Integer ceil(a / b) for ints or numpy arrays."""
    return -(-a // b)


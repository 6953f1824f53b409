"""BitFusion hardware model: per-layer cost, the search space's layer LUT, batched sub-net scoring.

    table = build_lut("apq-imagenet")            # model evaluated once per (layer, wbits, abits)
    table.save("runs/x/lut.parquet")
    table = CostTable.load("runs/x/lut.parquet", "apq-imagenet")
    table.score(genes)                           # {"latency_ms", "energy_mj", "macs", "bitops"}
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".bitfusion": ("BitFusionModel", "LayerCost", "Schedule", "Tiling"),
    ".config": ("BitFusionConfig",),
    ".layers": (
        "ConvLayer", "block_layers", "enumerate_layers", "fixed_layers", "mobilenet_v2_layers", "subnet_layers",
    ),
    ".lut": ("LUT_FORMAT_VERSION", "CostTable", "CostTableError", "build_lut", "run_cost_table", "space_hash"),
    ".reference": ("APQ_RELEASE_ENTRIES", "PAPER_MBV2_8BIT", "compare_to_reference"),
})

"""BitFusion hardware model: per-layer cost, the search space's layer LUT, batched sub-net scoring.

    table = build_lut("apq-imagenet")            # model evaluated once per (layer, wbits, abits)
    table.save("runs/x/lut.parquet")
    table = CostTable.load("runs/x/lut.parquet", "apq-imagenet")
    table.score(genes)                           # {"latency_ms", "energy_mj", "macs", "bitops"}
"""
from .bitfusion import BitFusionModel, LayerCost, Schedule, Tiling
from .config import BitFusionConfig
from .layers import ConvLayer, block_layers, enumerate_layers, fixed_layers, mobilenet_v2_layers, subnet_layers
from .lut import LUT_FORMAT_VERSION, CostTable, CostTableError, build_lut, space_hash
from .reference import APQ_RELEASE_ENTRIES, PAPER_MBV2_8BIT, compare_to_reference

__all__ = [
    "APQ_RELEASE_ENTRIES", "LUT_FORMAT_VERSION", "PAPER_MBV2_8BIT", "BitFusionConfig", "BitFusionModel",
    "ConvLayer", "CostTable", "CostTableError", "LayerCost", "Schedule", "Tiling", "block_layers", "build_lut",
    "compare_to_reference", "enumerate_layers", "fixed_layers", "mobilenet_v2_layers", "space_hash",
    "subnet_layers",
]

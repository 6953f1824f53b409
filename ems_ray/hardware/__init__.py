"""Hardware targets and their per-layer LUT: the BitFusion model, or latency measured in ONNX Runtime.

    table = build_lut("apq-imagenet")            # model evaluated once per (layer, wbits, abits)
    table.save("runs/x/lut.parquet")
    table = CostTable.load("runs/x/lut.parquet", "apq-imagenet")
    table.score(genes)                           # {"latency_ms", "energy_mj", "macs", "bitops"}
    build_measured_lut(space, OnnxRuntimeTarget(kind="onnxruntime-cpu"), "runs/x/lut.parquet")  # timed here
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".bitfusion": ("BitFusionModel", "LayerCost", "Schedule", "Tiling"),
    ".config": ("BitFusionConfig",),
    ".layers": (
        "ConvLayer", "block_layers", "enumerate_layers", "fixed_layers", "mobilenet_v2_layers", "subnet_layers",
    ),
    ".lut": (
        "LUT_FORMAT_VERSION", "CostTable", "CostTableError", "HostMismatchError", "build_lut", "build_run_table",
        "run_cost_table", "space_hash",
    ),
    ".measured": ("MeasurementError", "NetworkFit", "build_measured_lut", "fit_network"),
    ".targets": ("BitFusionTarget", "HardwareTarget", "OnnxRuntimeTarget", "TargetError", "parse_target"),
    ".validate": ("ValidationReport", "validate_table"),
    ".reference": ("APQ_RELEASE_ENTRIES", "PAPER_MBV2_8BIT", "compare_to_reference"),
})

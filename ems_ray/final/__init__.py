"""The final model (paper section 5, Table 2): for each budget the joint search's sub-net and the
paper's baselines (fixed 8-bit, sequential architecture -> pruning -> bits, no predictor transfer),
each quantized by its policy, fine-tuned and measured on the test split.

    out = run_final_stage(cfg.context(), cfg.final, search=cfg.search, predictor=cfg.predictor,
                          quant=cfg.quant)  # <run_dir>/final/<budget>/<method>.json, summary.csv
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "._choose": ("fixed_bits_search", "read_search_result", "scaled", "sequential_search"),
    "._measure": ("measure_all", "measure_subnet"),
    ".config": ("FIXED_BITS", "METHODS", "FinalConfig", "FinalResources", "SequentialConfig"),
    ".stage": ("FINAL_DIR", "SUMMARY_COLUMNS", "no_transfer_predictor", "run_final_stage", "write_summary"),
})

"""The final model (paper section 5, Table 2): for each budget the joint search's sub-net and the
paper's baselines (fixed 8-bit, sequential architecture -> pruning -> bits, no predictor transfer),
each quantized by its policy, fine-tuned and measured on the test split.

    out = run_final_stage(cfg)          # <run_dir>/final/<budget>/<method>.json, summary.csv
"""
from ._choose import fixed_bits_search, read_search_result, scaled, sequential_search
from ._measure import measure_all, measure_subnet
from .config import FIXED_BITS, METHODS, FinalConfig, FinalResources, SequentialConfig
from .stage import FINAL_DIR, SUMMARY_COLUMNS, no_transfer_predictor, run_final_stage, write_summary

__all__ = [
    "FINAL_DIR", "FIXED_BITS", "METHODS", "SUMMARY_COLUMNS", "FinalConfig", "FinalResources", "SequentialConfig",
    "fixed_bits_search", "measure_all", "measure_subnet", "no_transfer_predictor", "read_search_result",
    "run_final_stage", "scaled", "sequential_search", "write_summary",
]

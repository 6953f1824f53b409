"""The whole method as one resumable run: stages in order, a manifest, and a closing summary.

    manifest = run_pipeline(load_run_config("configs/fmnist-quick.yaml"))   # `ems-ray pipeline`

Stages (`stages.STAGES`): lut, supernet, collect-fp, collect-quant, predictor, search, final,
compare, report. Each is the same function its own `ems-ray` sub-command calls.
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".manifest": ("MANIFEST_FILE", "Manifest", "ManifestError", "StageRecord", "path_digest"),
    ".outcome": ("print_outcome",),
    ".runner": ("preflight", "run_pipeline", "select_stages", "stage_fingerprint"),
    ".stages": ("STAGE_NAMES", "STAGES", "Stage", "run_budgets"),
})

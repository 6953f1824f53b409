"""The whole method as one resumable run: stages in order, a manifest, and a closing summary.

    manifest = run_pipeline(load_run_config("configs/fmnist-quick.yaml"))   # `ems-ray pipeline`

Stages (`stages.STAGES`): lut, supernet, collect-fp, collect-quant, predictor, search, final,
compare, report. Each is the same function its own `ems-ray` sub-command calls.
"""
from .manifest import MANIFEST_FILE, Manifest, ManifestError, StageRecord, path_digest
from .outcome import print_outcome
from .runner import preflight, run_pipeline, select_stages, stage_fingerprint
from .stages import STAGE_NAMES, STAGES, Stage, run_budgets

__all__ = ["MANIFEST_FILE", "Manifest", "ManifestError", "STAGES", "STAGE_NAMES", "Stage", "StageRecord", "path_digest",
           "preflight", "print_outcome", "run_budgets", "run_pipeline", "select_stages", "stage_fingerprint"]

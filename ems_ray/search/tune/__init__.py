"""The search under Ray Tune, one folder as Ray Tune keeps one per integration:

    searchers.py         any `BatchSearch` as a Tune `Searcher`, one trial per batch (save/restore exact)
    optuna_searchers.py  Optuna TPE / NSGA-II through Optuna's ask/tell API (picklable, exact restore)
    experiments.py       the batch-scoring trainable; running, restoring and reading back an experiment

Importing this package imports Ray Tune; the rest of `ems_ray.search` runs without it.
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".searchers": ("METRIC", "MODE", "SCORES", "BatchSearcher", "EvolutionSearcher", "RandomSearcher",
                   "batch_genes", "pack_genes"),
    ".optuna_searchers": ("OPTUNA_ALGORITHMS", "OptunaSearch", "OptunaSearcher", "budget_constraints",
                          "optuna_searcher"),
    ".experiments": ("CANDIDATE_COLUMNS", "fit_tune", "make_searcher", "run_tune_search", "score_batch",
                     "scored_trials"),
})

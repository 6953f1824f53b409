"""The search under Ray Tune, one folder as Ray Tune keeps one per integration:

    searchers.py         our evolution and random search as Tune `Searcher`s (save/restore exact)
    optuna_searchers.py  Optuna TPE / NSGA-II through Optuna's ask/tell API (picklable, exact restore)
    experiments.py       the scoring trainable; running, restoring and reading back an experiment

Importing this package imports Ray Tune; the rest of `ems_ray.search` runs without it.
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".searchers": ("METRIC", "MODE", "EvolutionSearcher", "RandomSearcher", "config_to_genes", "param_space"),
    ".optuna_searchers": ("OPTUNA_ALGORITHMS", "OptunaSearcher", "budget_constraints", "optuna_searcher"),
    ".experiments": ("fit_tune", "make_searcher", "run_tune_search", "score_trainable", "scored_trials"),
})

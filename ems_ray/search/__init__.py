"""Hardware-aware search (paper 3.3/4): the best sub-net under a latency/energy/BitOps budget.

Candidates are `Genome` rows, scored by the accuracy predictor and the BitFusion LUT:

    scorer = CandidateScorer(load_predictor("runs/x/predictor/quant.pt", space), build_lut(space))
    budget = Budget.parse("latency=8.5ms")
    result = run_local_evolution(scorer, budget, EvolutionConfig(), seed=0)  # 50k candidates, seconds
    result.scores, result.subnet(Genome(space))

Every searcher is a `BatchSearch` (ask a batch of rows, tell their scores): the `Evolution`, random
search (`RandomSearch`, `run_local_random`) and Optuna TPE and NSGA-II (`OptunaSearch`). The same
objects run under Ray Tune, one trial per batch (`EvolutionSearcher`, `RandomSearcher`,
`optuna_searcher`), over the same batch-scoring trainable: `run_tune_search`.
A run's stages, each given the run's `RunContext` (`RunConfig.context()`) and its `search` section:
`run_search_stage(run, search, budget)` (`ems-ray search`), `run_compare_stage(run, search, budget)`
(`ems-ray compare-searchers`: all four at the same number of scored candidates) and
`run_pareto_stage(run, search, objectives)` (`ems-ray search --pareto`: the non-dominated set over
accuracy and one or two costs in one run, `ParetoEvolution` or Optuna NSGA-II).
"""
from ems_ray._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "._base": ("BatchSearch",),
    "._evolution": ("Evolution", "ParetoEvolution"),
    "._local": ("SearchResult", "make_evolution", "make_random_search", "run_local_evolution", "run_local_random"),
    "._pareto": ("ParetoArchive", "crowding_distance", "hypervolume_of", "nondominated_ranks", "nsga2_order",
                  "objective_matrix"),
    "._random": ("RandomSearch",),
    "._restricted": (
        "COLUMN_GROUPS", "RestrictedGenome", "column_groups", "columns_of",
        "run_restricted_evolution",
    ),
    "._scoring": (
        "CandidateScorer", "InfeasibleBudgetError", "SyntheticPredictor", "check_feasible", "cheapest_costs",
        "costliest_costs", "format_cost", "gene_names", "hypervolume", "pareto_front", "within",
    ),
    ".config": ("ALGORITHMS", "OBJECTIVES", "Budget", "CompareConfig", "EvolutionConfig", "Objectives",
                "ObjectivesError", "ParetoConfig", "SearchConfig"),
    ".compare": ("run_compare_stage",),
    ".pareto": ("ParetoResult", "read_front", "run_local_pareto", "run_pareto_stage", "write_front"),
    ".stage": ("run_search_stage", "save_result"),
})

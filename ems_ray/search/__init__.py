"""Hardware-aware search (paper 3.3/4): the best sub-net under a latency/energy/BitOps budget.

Candidates are `Genome` rows, scored by the accuracy predictor and the BitFusion LUT:

    scorer = CandidateScorer(load_predictor("runs/x/predictor/quant.pt", space), build_lut(space))
    budget = Budget.parse("latency=8.5ms")
    result = run_local_evolution(scorer, budget, EvolutionConfig(), seed=0)  # 50k candidates, seconds
    result.scores, result.subnet(Genome(space))

The same `Evolution` runs under Ray Tune as `EvolutionSearcher` (one trial per candidate), beside
random search (`RandomSearch`, `run_local_random`, `RandomSearcher`) and Optuna TPE and NSGA-II
(`optuna_searcher`) over the same space and trainable: `run_tune_search`.
A run's stages: `run_search_stage(cfg, budget)` (`ems-ray search`) and `run_compare_stage(cfg,
budget)` (`ems-ray compare-searchers`: all four at the same number of scored candidates).
"""
from ._evolution import Evolution
from ._local import SearchResult, make_evolution, make_random_search, run_local_evolution, run_local_random
from ._random import RandomSearch
from ._restricted import (
    COLUMN_GROUPS, RestrictedEvolution, RestrictedGenome, column_groups, columns_of, run_restricted_evolution,
)
from ._scoring import (
    CandidateScorer, InfeasibleBudgetError, SyntheticPredictor, check_feasible, cheapest_costs, format_cost, gene_names,
    pareto_front, within,
)
from .config import ALGORITHMS, Budget, CompareConfig, EvolutionConfig, SearchConfig
from .compare import run_compare_stage
from .stage import run_search_stage, save_result

__all__ = [
    "Budget", "CandidateScorer", "Evolution", "EvolutionConfig", "InfeasibleBudgetError", "SearchConfig",
    "SearchResult", "SyntheticPredictor", "check_feasible", "cheapest_costs", "format_cost", "gene_names", "make_evolution",
    "run_local_evolution", "run_search_stage", "save_result", "within",
    "ALGORITHMS", "CompareConfig", "RandomSearch", "make_random_search", "pareto_front", "run_compare_stage",
    "run_local_random",
    "COLUMN_GROUPS", "RestrictedEvolution", "RestrictedGenome", "column_groups", "columns_of", "run_restricted_evolution",
]

"""How each method picks its sub-net under a budget: the joint search and the paper's baselines.

All of them run the same evolution (`EvolutionConfig`, seed) on the same LUT; they differ in which
gene columns are free and which predictor scores them (docs/final.md has the exact rules).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ems_ray.errors import InputError
from ems_ray.search import (
    Budget, CandidateScorer, EvolutionConfig, InfeasibleBudgetError, SearchResult, run_restricted_evolution,
)
from ems_ray.search._restricted import target_genome
from ems_ray.space import Genome

from .config import FIXED_BITS, SequentialConfig


def scaled(budget: Budget, factor: float) -> Budget:
    """`budget` with every limit multiplied by `factor`."""
    return Budget(**{k: v * factor for k, v in budget.limits().items()})


def fixed_bits_search(scorer: CandidateScorer, budget: Budget, config: EvolutionConfig, seed: int,
                      bits: int = FIXED_BITS) -> SearchResult:
    """Architecture (depth, kernel, width) searched with every bit-width pinned at `bits`.

    Scored by the quantization-aware predictor: it sees the bits, so 8-bit rows get the accuracy
    it expects of them at 8 bits, and the only difference from the joint search is the restriction.
    """
    frozen = scorer.table.target.frozen_bits
    if frozen is not None and frozen != bits:
        raise InputError(f"final.methods: fixed{bits} cannot run on hardware '{scorer.table.target.kind}', "
                         f"which executes {frozen} bits only")
    genome = target_genome(scorer.table, Genome(scorer.space).largest(bits=bits), ("depth", "kernel", "mid"))
    return run_restricted_evolution(scorer, genome, budget, config, seed, algorithm=f"fixed{bits}")


def _bit_blind_step(scorer: CandidateScorer, genome, budget: Budget, config: EvolutionConfig,
                    seed: int, name: str) -> tuple[np.ndarray, dict]:
    """One of the sequential pipeline's first two steps. When nothing of its restricted space fits
    its (reference-precision) budget, the step keeps the restricted space's cheapest row: the best
    a bit-blind engineer can do before quantization is decided."""
    try:
        result = run_restricted_evolution(scorer, genome, budget, config, seed, algorithm=name)
        return result.genes, {"step": name, "budget": budget.describe(), "fallback": False,
                              "predicted_fp_accuracy": result.scores["accuracy"], "scored": result.scored,
                              "seconds": result.seconds}
    except InfeasibleBudgetError as exc:
        t0 = time.perf_counter()
        row = genome.cheapest(scorer.table, budget)
        return row, {"step": name, "budget": budget.describe(), "fallback": True, "reason": str(exc),
                     "predicted_fp_accuracy": float(scorer.accuracy(row)[0]), "scored": 0,
                     "seconds": time.perf_counter() - t0}


def sequential_search(fp_scorer: CandidateScorer, quant_scorer: CandidateScorer, budget: Budget,
                      settings: SequentialConfig, config: EvolutionConfig, seed: int) -> SearchResult:
    """Architecture search at full precision, then channel pruning, then a bits-only search.

    1. depth + kernel free, full width, bits at `reference_bits`, FP predictor, budget x `arch_budget_factor`;
    2. mid channels free (pruning), the rest from step 1, FP predictor, budget x `prune_budget_factor`;
    3. bits free, architecture from step 2, quantization-aware predictor, the real budget.
    Raises `InfeasibleBudgetError` when no bit assignment of step 2's network fits the budget.
    """
    genome = Genome(fp_scorer.space)
    t0 = time.perf_counter()
    ref = settings.reference_bits
    table = fp_scorer.table
    full_width = target_genome(table, genome.largest(bits=ref), ("depth", "kernel"))
    arch, arch_info = _bit_blind_step(fp_scorer, full_width, scaled(budget, settings.arch_budget_factor), config,
                                      seed, "architecture")
    pruned, prune_info = _bit_blind_step(fp_scorer, target_genome(table, arch, ("mid",)),
                                         scaled(budget, settings.prune_budget_factor), config, seed + 1, "pruning")
    steps = [arch_info, prune_info]
    try:
        if table.target.frozen_bits is not None:  # the target runs one precision: there are no bits to choose
            scores = quant_scorer.score_one(pruned, budget)
            if not scores.pop("within_budget"):
                raise InfeasibleBudgetError(f"step 2's network at {table.target.frozen_bits} bits does not fit "
                                            f"budget {budget.describe()}")
            bits = SearchResult("bits", budget, pruned, scores, 1, 0.0)
        else:
            bits = run_restricted_evolution(quant_scorer, target_genome(table, pruned, ("bits",)), budget, config,
                                            seed + 2, algorithm="bits")
    except InfeasibleBudgetError as exc:
        raise InfeasibleBudgetError(f"sequential: {exc} (after steps {json.dumps(steps)})") from None
    steps.append({"step": "bits", "budget": budget.describe(), "fallback": False,
                  "predicted_accuracy": bits.scores["accuracy"], "scored": bits.scored, "seconds": bits.seconds})
    return SearchResult("sequential", budget, bits.genes, bits.scores, sum(s["scored"] for s in steps),
                        time.perf_counter() - t0, bits.history, {"steps": steps, "rows": {
                            "architecture": arch.tolist(), "pruning": pruned.tolist()}})


def read_search_result(out_dir: Path, scorer: CandidateScorer, budget: Budget, algorithm: str = "evolution"
                       ) -> SearchResult | None:
    """The search stage's result in `out_dir` when it is current: same algorithm and budget, and its
    recorded scores are what `scorer` (predictor + LUT) gives its gene row now. Any retrained
    predictor or rebuilt LUT changes those scores, so a stale result is never reused."""
    path = Path(out_dir) / "result.json"
    if not path.is_file() or not (Path(out_dir) / "best.yaml").is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        genes = np.asarray(saved["genes"], dtype=np.int16)
        if saved.get("algorithm") != algorithm or saved.get("budget") != budget.describe():
            return None
        now = scorer.score_one(genes)
    except (ValueError, KeyError, TypeError):
        return None
    if any(not np.isclose(now[k], saved["scores"].get(k, np.nan), rtol=1e-6, atol=1e-6) for k in now):
        return None
    return SearchResult(algorithm, budget, genes, now, saved["scored"], saved["seconds"], saved.get("history", []),
                        {"reused": str(path)})

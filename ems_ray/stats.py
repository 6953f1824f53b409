"""Spread over repeated measurements, and the one rule the project uses to call a difference real.

Predictor metrics (several training seeds) and final-model accuracies (several fine-tune seeds) are
reported as mean ± sd with `mean_sd`; the report marks a difference between two methods with
`exceeds_noise`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

NOISE_RULE = ("a difference of means exceeds the noise when |Δ mean| > 2 × pooled sd, the pooled seed-to-seed "
              "sd of one measurement")


def mean_sd(values: Sequence[float]) -> dict:
    """`mean`, sample `sd` (n - 1 in the denominator; None for a single value) and the `values`."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_sd: no values")
    mean = math.fsum(vals) / len(vals)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return {"mean": mean, "sd": sd, "values": vals}


def pooled_sd(sd_a: float, n_a: int, sd_b: float, n_b: int) -> float:
    """The two samples' common sd, each variance weighted by its degrees of freedom."""
    return math.sqrt(((n_a - 1) * sd_a ** 2 + (n_b - 1) * sd_b ** 2) / (n_a + n_b - 2))


def exceeds_noise(mean_a: float, sd_a: float | None, n_a: int, mean_b: float, sd_b: float | None, n_b: int
                  ) -> bool | None:
    """Whether |mean_a - mean_b| > 2 × pooled sd (`NOISE_RULE`); None when a side has fewer than 2 values.

    Why this rule: it asks that the two methods' seed-to-seed spreads do not overlap within one sd
    each, which needs no distribution tables; with 3 seeds a side it is about as strict as a
    two-sided Welch t-test at p < 0.07, and stricter with more seeds. It sees only the fine-tune
    (or training) seed's noise: every method is measured on the same test images.
    """
    if sd_a is None or sd_b is None or n_a < 2 or n_b < 2:
        return None
    return abs(mean_a - mean_b) > 2 * pooled_sd(sd_a, n_a, sd_b, n_b)

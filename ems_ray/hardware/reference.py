"""Published BitFusion figures the cost model is checked against (benchmark and tests).

* `PAPER_MBV2_8BIT`: the EMS/APQ paper, Table 2 — MobileNetV2 at 8 bits on BitFusion, batch 1.
* `APQ_RELEASE_ENTRIES`: 26 per-layer entries of the APQ release's BitFusion LUT
  (mit-han-lab/apq, `lut/BitFusion_new.b1.dict`, batch 1), pointwise and depthwise 3/5/7 layers at
  7²…112², W8A8 and W4A4. Their generator is the authors' simulator (hsharma35/bitfusion); its
  pointwise latencies are reproduced by a port of that simulator's `get_stats_fast` (outputs not
  padded to the 32 columns) within 1% for 11 of 12 (4% for the last), energies within 1-8% with
  0.46 nJ/cycle leakage added; its depthwise latencies match C/g separate g->g convolutions in
  that simulator (g = 8 channels at 8 bits, 32 at 4 bits) within 2% (see docs/hardware.md).
* `APQ_RELEASE_FIXED`: the same file's "head" and "tail" sums. Which layers they hold is not
  stated; their magnitudes match the stem conv 3->32 k3 s2 @224 and the 1x1 conv 320->1280 @7 alone
  (inferred, so reported separately and not part of the 26).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .layers import ConvLayer

if TYPE_CHECKING:
    from .bitfusion import BitFusionModel

PAPER_MBV2_8BIT = (9.10, 12.46)  # ms, mJ

# (kind, in, out, kernel, stride, input resolution, bits (W=A), latency ms, energy mJ)
APQ_RELEASE_ENTRIES = [
    ("pw", 16, 64, 1, 1, 112, 8, 0.552022, 0.931547), ("dw", 64, 64, 3, 2, 112, 8, 0.453104, 0.526324),
    ("pw", 64, 24, 1, 1, 56, 8, 0.067030, 0.118419), ("dw", 64, 64, 5, 2, 112, 8, 1.255920, 1.072795),
    ("dw", 64, 64, 7, 2, 112, 8, 2.461328, 1.825264), ("pw", 24, 96, 1, 1, 56, 8, 0.207168, 0.355013),
    ("dw", 96, 96, 3, 1, 56, 8, 0.681816, 0.751278), ("pw", 16, 96, 1, 1, 112, 8, 0.819670, 1.383376),
    ("dw", 96, 96, 7, 2, 112, 8, 3.691992, 2.737897), ("dw", 768, 768, 7, 1, 7, 8, 0.522240, 0.314573),
    ("pw", 768, 320, 1, 1, 7, 8, 0.054976, 0.104886), ("dw", 1152, 1152, 5, 1, 7, 8, 0.421632, 0.277048),
    ("pw", 1152, 320, 1, 1, 7, 8, 0.088216, 0.167261), ("pw", 104, 24, 1, 1, 56, 8, 0.077564, 0.141183),
    ("dw", 112, 112, 3, 1, 56, 8, 0.795452, 0.876491), ("dw", 960, 960, 7, 1, 7, 8, 0.652800, 0.393216),
    ("pw", 96, 456, 1, 1, 14, 4, 0.062192, 0.106882), ("dw", 488, 488, 3, 1, 14, 4, 0.089792, 0.165642),
    ("pw", 488, 96, 1, 1, 14, 4, 0.018482, 0.033671), ("dw", 464, 464, 3, 2, 14, 4, 0.039210, 0.049819),
    ("dw", 512, 512, 5, 1, 14, 4, 0.188544, 0.358873), ("pw", 192, 768, 1, 1, 7, 4, 0.031624, 0.054600),
    ("dw", 768, 768, 3, 1, 7, 4, 0.058128, 0.072028), ("pw", 768, 192, 1, 1, 7, 4, 0.017120, 0.030836),
    ("dw", 384, 384, 5, 2, 14, 4, 0.057576, 0.085951), ("pw", 456, 192, 1, 1, 7, 4, 0.010852, 0.019406),
]

# name, inferred layer, bits, latency ms, energy mJ
APQ_RELEASE_FIXED = [
    ("head", ConvLayer("conv", 3, 32, 3, 2, 224, 224), 8, 0.295904, 0.506184),
    ("tail", ConvLayer("pw", 320, 1280, 1, 1, 7, 7), 8, 0.081608, 0.151808),
]


def reference_layers() -> list[tuple[ConvLayer, int, float, float]]:
    """The 26 APQ-release entries as (layer, bits, latency ms, energy mJ)."""
    return [(ConvLayer(kind, c_in, c_out, k, s, r, r), b, lat, energy)
            for kind, c_in, c_out, k, s, r, b, lat, energy in APQ_RELEASE_ENTRIES]


def spearman(a, b) -> float:
    ranks = [np.argsort(np.argsort(np.asarray(x))) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def compare_to_reference(model: BitFusionModel) -> dict:
    """Ours vs the 26 APQ-release entries: per-entry rows, geometric-mean ratios (overall and per
    (kind, bits) group) and Spearman rank correlations."""
    rows = []
    for layer, bits, lat, energy in reference_layers():
        cost = model.layer_cost(layer, bits, bits)
        rows.append({"layer": layer, "bits": bits, "ref_ms": lat, "ours_ms": cost.latency_ms,
                     "ref_mj": energy, "ours_mj": cost.energy_mj, "cost": cost})

    def geo(items, key):
        return float(np.exp(np.mean([np.log(r[f"ours_{key}"] / r[f"ref_{key}"]) for r in items])))

    groups = {}
    for r in rows:
        groups.setdefault((r["layer"].kind, r["bits"]), []).append(r)
    return {
        "rows": rows,
        "geo_ms": geo(rows, "ms"), "geo_mj": geo(rows, "mj"),
        "spearman_ms": spearman([r["ours_ms"] for r in rows], [r["ref_ms"] for r in rows]),
        "spearman_mj": spearman([r["ours_mj"] for r in rows], [r["ref_mj"] for r in rows]),
        "groups": {key: (len(items), geo(items, "ms"), geo(items, "mj")) for key, items in groups.items()},
    }

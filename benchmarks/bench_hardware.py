"""Speed of the hardware LUT (build, batched scoring, encoding) and what the BitFusion model says
about MobileNetV2-style layers, next to published BitFusion figures.

    python benchmarks/bench_hardware.py [--subnets 100000] [--repeats 3] [--reference-table]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ems_ray.hardware import BitFusionModel, ConvLayer, build_lut, enumerate_layers, mobilenet_v2_layers
from ems_ray.space import Encoding, Genome, load_preset

PAPER_MBV2_8BIT = (9.10, 12.46)  # EMS/APQ paper, Table 2: MobileNetV2 8-bit on BitFusion (ms, mJ)

# Per-layer BitFusion entries published with the APQ release (lut/BitFusion_new.b1.dict, batch 1):
# (kind, in, out, kernel, stride, input resolution, bits (W=A), latency ms, energy mJ).
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


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def spearman(a, b) -> float:
    ranks = [np.argsort(np.argsort(np.asarray(x))) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def bench_tables(names: list[str], n_subnets: int, repeats: int) -> None:
    print(f"\n{'space':14s} {'layers':>6s} {'entries':>7s} {'LUT build s':>11s} | {'score s':>7s} "
          f"{'sub-nets/s':>11s} | {'encode s':>8s} {'rows/s':>11s}   ({n_subnets:,} random sub-nets)")
    summaries = []
    for name in names:
        space = load_preset(name)
        start = time.perf_counter()
        table = build_lut(space)
        build_s = time.perf_counter() - start
        genes = Genome(space).sample(np.random.default_rng(0), n_subnets)
        encoding = Encoding(space)
        table.score(genes[:100]), encoding.encode(genes[:100])  # warm-up
        score_s = best_time(lambda: table.score(genes), repeats)
        encode_s = best_time(lambda: encoding.encode(genes), repeats)
        print(f"{name:14s} {len(enumerate_layers(space)):6d} {len(table):7d} {build_s:11.2f} | {score_s:7.3f} "
              f"{n_subnets / score_s:11,.0f} | {encode_s:8.3f} {n_subnets / encode_s:11,.0f}")
        summaries.append(table.summary())
    print("\n" + "\n".join(summaries))


def bench_mobilenet_v2(model: BitFusionModel) -> None:
    layers = mobilenet_v2_layers()
    picks = [0, 1, 2, 3, 4, 5, 12, 13, 14, 33, 34, 35, 42, 43, 44, len(layers) - 2, len(layers) - 1]
    bits = (8, 4, 2)
    print("\nMobileNetV2 layers on BitFusion (our model, batch 1); * = memory-bound at that precision")
    print(f"{'layer':30s} {'MMACs':>6s} | " + " ".join(f"{f'ms W{b}A{b}':>9s}" for b in bits)
          + " | " + " ".join(f"{f'mJ W{b}A{b}':>9s}" for b in bits))
    for i in picks:
        costs = [model.layer_cost(layers[i], b, b) for b in bits]
        lat = " ".join(f"{c.latency_ms:8.4f}{'*' if c.memory_bound else ' '}" for c in costs)
        energy = " ".join(f"{c.energy_mj:9.4f}" for c in costs)
        print(f"{layers[i].describe():30s} {layers[i].macs / 1e6:6.1f} | {lat} | {energy}")
    totals = [model.network_cost((la, b, b) for la in layers) for b in bits]
    print(f"{'whole network (' + str(len(layers)) + ' layers)':30s} {totals[0]['macs'] / 1e6:6.1f} | "
          + " ".join(f"{t['latency_ms']:8.3f} " for t in totals) + " | "
          + " ".join(f"{t['energy_mj']:9.3f}" for t in totals))
    ms, mj = PAPER_MBV2_8BIT
    print(f"paper, MobileNetV2 8-bit: {ms} ms, {mj} mJ -> ours/paper = {totals[0]['latency_ms'] / ms:.2f}x latency, "
          f"{totals[0]['energy_mj'] / mj:.2f}x energy")


def bench_reference(model: BitFusionModel, show_table: bool) -> None:
    ours_ms, ours_mj, ref_ms, ref_mj = [], [], [], []
    if show_table:
        print(f"\n{'APQ-release entry':34s} {'ref ms':>8s} {'ours ms':>8s} {'ref mJ':>8s} {'ours mJ':>8s}")
    for kind, c_in, c_out, k, s, r, b, lat, energy in APQ_RELEASE_ENTRIES:
        layer = ConvLayer(kind, c_in, c_out, k, s, r, r)
        cost = model.layer_cost(layer, b, b)
        ours_ms.append(cost.latency_ms), ours_mj.append(cost.energy_mj), ref_ms.append(lat), ref_mj.append(energy)
        if show_table:
            name = f"{layer.describe()} W{b}A{b}"
            print(f"{name:34s} {lat:8.4f} {cost.latency_ms:8.4f} {energy:8.4f} {cost.energy_mj:8.4f}")
    geo = [float(np.exp(np.mean(np.log(np.asarray(o) / np.asarray(r)))))
           for o, r in ((ours_ms, ref_ms), (ours_mj, ref_mj))]
    print(f"\nvs {len(APQ_RELEASE_ENTRIES)} per-layer entries of the APQ release's BitFusion LUT (W8A8 and W4A4): "
          f"Spearman latency {spearman(ours_ms, ref_ms):.3f}, energy {spearman(ours_mj, ref_mj):.3f}; "
          f"geometric-mean ratio ours/ref {geo[0]:.2f}x latency, {geo[1]:.2f}x energy")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subnets", type=int, default=100_000, help="random sub-nets to score and encode")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best is reported)")
    parser.add_argument("--spaces", nargs="+", default=["apq-imagenet", "fmnist-small"])
    parser.add_argument("--reference-table", action="store_true", help="print every APQ-release entry")
    args = parser.parse_args(argv)
    model = BitFusionModel()
    print(model.config.describe())
    bench_tables(args.spaces, args.subnets, args.repeats)
    bench_mobilenet_v2(model)
    bench_reference(model, args.reference_table)


if __name__ == "__main__":
    main()

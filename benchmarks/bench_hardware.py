"""Speed of the hardware LUT (build, batched scoring, encoding) and what the BitFusion model says
about MobileNetV2-style layers, next to published BitFusion figures.

    python benchmarks/bench_hardware.py [--subnets 100000] [--repeats 3] [--no-ablation]

The comparison prints every APQ-release entry with its ratio, the geometric mean per (kind, bits),
and (unless --no-ablation) what each simulator-faithful BitFusionConfig default contributes: the
model with that one switch reverted, and with all four reverted (the previous model).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ems_ray.hardware import BitFusionConfig, BitFusionModel, build_lut, enumerate_layers, mobilenet_v2_layers
from ems_ray.hardware.reference import (
    APQ_RELEASE_ENTRIES, APQ_RELEASE_FIXED, PAPER_MBV2_8BIT, compare_to_reference,
)
from ems_ray.space import Encoding, Genome, load_preset

# Each simulator-faithful default, and the value that reverts it (the previous model had all four).
REVERTS = {
    "load_partial_sums": False,
    "depthwise_lanes": None,
    "depthwise_zero_weights": False,
    "depthwise_blocks_as_layers": False,
}


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


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


def bench_reference(model: BitFusionModel) -> None:
    cmp = compare_to_reference(model)
    print(f"\n{'APQ-release entry':34s} {'ref ms':>8s} {'ours ms':>8s} {'ratio':>6s} | {'ref mJ':>8s} "
          f"{'ours mJ':>8s} {'ratio':>6s} | g  tiling (oc, ic, oh, ow), order")
    for r in cmp["rows"]:
        name, fast = f"{r['layer'].describe()} W{r['bits']}A{r['bits']}", r["cost"].fastest
        t = fast.tiling
        print(f"{name:34s} {r['ref_ms']:8.4f} {r['ours_ms']:8.4f} {r['ours_ms'] / r['ref_ms']:6.2f} | "
              f"{r['ref_mj']:8.4f} {r['ours_mj']:8.4f} {r['ours_mj'] / r['ref_mj']:6.2f} | "
              f"{fast.depthwise_block or '-':>2} ({t.out_channels}, {t.in_channels}, {t.out_h}, {t.out_w}) "
              f"{'/'.join(fast.loop_order)}")
    print("geometric-mean ratio ours/ref per group: " + ", ".join(
        f"{kind} W{b}A{b} (n={n}) {g_ms:.2f}x / {g_mj:.2f}x"
        for (kind, b), (n, g_ms, g_mj) in sorted(cmp["groups"].items())))
    for name, layer, b, lat, energy in APQ_RELEASE_FIXED:
        cost = model.layer_cost(layer, b, b)
        print(f"release '{name}' (inferred: {layer.describe()} W{b}A{b}): ref {lat:.4f} ms {energy:.4f} mJ, "
              f"ours {cost.latency_ms:.4f} ms {cost.energy_mj:.4f} mJ "
              f"({cost.latency_ms / lat:.2f}x, {cost.energy_mj / energy:.2f}x)")
    print(f"\nvs {len(APQ_RELEASE_ENTRIES)} per-layer entries of the APQ release's BitFusion LUT (W8A8 and W4A4): "
          f"Spearman latency {cmp['spearman_ms']:.3f}, energy {cmp['spearman_mj']:.3f}; "
          f"geometric-mean ratio ours/ref {cmp['geo_ms']:.2f}x latency, {cmp['geo_mj']:.2f}x energy")


def bench_ablation() -> None:
    """The comparison figures with each simulator-faithful default reverted, one at a time and all together."""
    variants = ([("defaults", {})] + [(f"{k}={v}", {k: v}) for k, v in REVERTS.items()]
                + [("all four reverted", REVERTS)])
    ms, mj = PAPER_MBV2_8BIT
    print(f"\n{'BitFusionConfig':34s} | {'geo ms':>6s} {'geo mJ':>6s} {'rho ms':>6s} {'rho mJ':>6s} | "
          f"MobileNetV2 W8A8 (paper {ms} ms, {mj} mJ)")
    for name, overrides in variants:
        model = BitFusionModel(BitFusionConfig(**overrides))
        cmp = compare_to_reference(model)
        total = model.network_cost((layer, 8, 8) for layer in mobilenet_v2_layers())
        print(f"{name:34s} | {cmp['geo_ms']:6.2f} {cmp['geo_mj']:6.2f} {cmp['spearman_ms']:6.3f} "
              f"{cmp['spearman_mj']:6.3f} | {total['latency_ms']:6.2f} ms {total['energy_mj']:6.2f} mJ "
              f"({total['latency_ms'] / ms:.2f}x, {total['energy_mj'] / mj:.2f}x)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subnets", type=int, default=100_000, help="random sub-nets to score and encode")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best is reported)")
    parser.add_argument("--spaces", nargs="+", default=["apq-imagenet", "fmnist-small"])
    parser.add_argument("--no-ablation", action="store_true", help="skip the per-default ablation table")
    args = parser.parse_args(argv)
    model = BitFusionModel()
    print(model.config.describe())
    bench_tables(args.spaces, args.subnets, args.repeats)
    bench_mobilenet_v2(model)
    bench_reference(model)
    if not args.no_ablation:
        bench_ablation()


if __name__ == "__main__":
    main()

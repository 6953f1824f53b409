"""Integer against float ONNX Runtime latency of the same sub-nets, and the export's test accuracy.

    .venv/bin/python benchmarks/bench_runtime.py                      # fmnist-full: 2 searched + 1 random sub-net
    .venv/bin/python benchmarks/bench_runtime.py --finetune-steps 0   # quicker: calibration only

Each sub-net (the `ems` final models of `results/fmnist-full/report/summary.csv` at the budgets
given, plus `--random` seeded random ones) is quantized with the run's recipe (calibration, a
distilled fine-tune, BN re-estimation), exported with `export_quantized` (integer kernels) and
in float (`export_float_onnx` of the BN-recalibrated float sub-net), then both are timed in ONNX
Runtime on the CPU at batch 1 and 64 on 1 and 2 threads (median of `--repeats` runs after
warm-up), side by side in one process. Accuracy: the PyTorch fake-quant model and the exported
graph on the whole test split. Last, ONNX Runtime's profile of each integer graph at batch 64 on
one thread: the share of kernel time by op type, convolutions split into depthwise and dense.
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _tables import print_table

from ems_ray.config import load_run_config
from ems_ray.data import build_splits, make_loader
from ems_ray.quant import (
    executed_ops, export_float_onnx, export_quantized, load_exported, measure_latency, ort_session, quantize_subnet,
)
from ems_ray.space import Genome
from ems_ray.supernet import evaluate, recalibrate_bn
from ems_ray.supernet.checkpoint import load_supernet

INPUT = "images"


def _subnets(genome: Genome, summary: Path, budgets: list[str], n_random: int, seed: int) -> list[tuple[str, np.ndarray]]:
    with summary.open() as f:
        rows = {(r["budget"], r["method"]): r for r in csv.DictReader(f)}
    out = [(f"ems {b}", np.array([int(g) for g in rows[(b, "ems")]["genes"].split()])) for b in budgets]
    for i, row in enumerate(genome.sample(np.random.default_rng(seed), n_random)):
        out.append((f"random {i}", row))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/fmnist-full.yaml")
    ap.add_argument("--supernet", default="results/fmnist-full/supernet.pt")
    ap.add_argument("--summary", default="results/fmnist-full/report/summary.csv")
    ap.add_argument("--budgets", nargs="*", default=["latency=0.15ms", "latency=0.45ms"])
    ap.add_argument("--random", type=int, default=1, help="random sub-nets besides the searched ones")
    ap.add_argument("--finetune-steps", type=int, help="override the recipe's fine-tune steps")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--torch-threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.torch_threads)
    cfg = load_run_config(args.config)
    space = cfg.search_space()
    recipe = cfg.quant if args.finetune_steps is None else cfg.quant.model_copy(update={"finetune_steps": args.finetune_steps})
    supernet = load_supernet(Path(args.supernet), space)
    splits = build_splits(cfg.data)
    train = make_loader(splits.train, cfg.data.batch_size, shuffle=True, seed=cfg.seed)
    val = make_loader(splits.val, cfg.data.eval_batch_size)
    test = make_loader(splits.test, cfg.data.eval_batch_size)
    genome = Genome(space)
    shape = (space.image_channels, space.input_resolution, space.input_resolution)

    latency_rows, accuracy_rows, profile_rows = [], [], []
    for label, genes in _subnets(genome, Path(args.summary), args.budgets, args.random, cfg.seed):
        config = genome.to_config(genes)
        t0 = time.perf_counter()
        result = quantize_subnet(supernet, config, recipe, train, val, seed=cfg.seed)
        float_net = recalibrate_bn(supernet.extract(config), train, recipe.bn_batches)
        with tempfile.TemporaryDirectory() as tmp:
            files = export_quantized(result.model, config, result.policy, tmp, calibration=train,
                                     calibration_batches=recipe.calib_batches)
            float_path = export_float_onnx(float_net, Path(tmp) / "float.onnx", shape)
            measured = time.perf_counter() - t0
            side = load_exported(files.sidecar).sidecar
            for threads in (1, 2):
                sessions = {"float": ort_session(float_path, threads), "int8": ort_session(files.onnx, threads)}
                for batch in (1, 64):
                    ms = {kind: measure_latency(None, INPUT, shape, batch, threads, args.repeats, session=s).median_ms
                          for kind, s in sessions.items()}
                    latency_rows.append((label, threads, batch, f"{ms['float']:.3f}", f"{ms['int8']:.3f}",
                                         f"{ms['float'] / ms['int8']:.2f}x"))
            fq_acc, _ = evaluate(result.model, test)
            onnx_acc, _ = evaluate(load_exported(files.sidecar, num_threads=2), test)
            ran = executed_ops(files.onnx, INPUT, shape, batch=64, threads=1, runs=5)
            float_ran = executed_ops(float_path, INPUT, shape, batch=64, threads=1, runs=5)
        bits = sorted({(layer["w_bits"], layer["a_bits"]) for layer in side["layers"]})
        accuracy_rows.append((label, f"{side['runtime']['integer_convs']}/{side['runtime']['quantized_convs']}",
                              " ".join(f"W{w}A{a}" for w, a in bits), f"{100 * fq_acc:.2f}", f"{100 * onnx_acc:.2f}",
                              f"{100 * (onnx_acc - fq_acc):+.2f}", f"{measured:.0f} s"))
        shares = ", ".join(f"{op} {100 * t:.0f}%" for op, t in ran.time_share.items() if t >= 0.005)
        kinds = ", ".join(f"{k} {100 * t:.0f}%" for k, t in ran.conv_kinds.items())
        float_kinds = ", ".join(f"{k} {100 * t:.0f}%" for k, t in float_ran.conv_kinds.items())
        profile_rows.append((label, shares, kinds, float_kinds))

    print_table("ONNX Runtime latency, float vs integer graph of the same sub-net (ms per batch, median)",
           ("sub-net", "threads", "batch", "float ms", "int8 ms", "int8 speed-up"), latency_rows)
    print_table("Test accuracy (%, whole test split): PyTorch fake-quant model vs the exported graph in ONNX Runtime",
           ("sub-net", "integer convs", "bits (W, A)", "fake-quant", "ONNX", "diff", "quantize+export"), accuracy_rows)
    print_table("Integer graph, batch 64, 1 thread: share of kernel time by op type (profile)",
           ("sub-net", "op types", "convolutions (int8)", "convolutions (float graph)"), profile_rows)


if __name__ == "__main__":
    main()

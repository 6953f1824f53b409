"""Quantized accuracy straight from a quantization-aware super network against today's recipe
(extract from the float super network + a 40-step distilled fine-tune), on the same sub-nets.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_qa_supernet.py --methods finetune   # float half
    PYTHONPATH=. .venv/bin/python benchmarks/bench_qa_supernet.py --qa runs/fmnist-qa/supernet/supernet.pt

Pairs: `--random` random (architecture, bit policy) pairs and `--w4a4` random architectures at
W4A4, drawn with a fixed seed; every pair is measured as collection measures a quantized point
(calibration and BN batches from the training split, accuracy on the first `--val-images`
validation images), on one thread. Methods:
  finetune   float super network, the fmnist-full collection recipe (KL ranges, 40 fine-tune steps)
  float-0    float super network, the same recipe without the fine-tune (what QA training must beat)
  qa-max     quantization-aware super network, no fine-tune, max-magnitude ranges (as it trained)
  qa-kl      quantization-aware super network, no fine-tune, KL ranges
Each method also records the sub-net's float accuracy (BN recalibrated), so the float sub-nets'
loss from quantization-aware training shows too. Rows go to `--out` as they finish; a rerun
measures only the missing (pair, method) rows.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from ems_ray.artifacts import file_sha256
from ems_ray.config import load_run_config
from ems_ray.data import build_splits, make_loader
from ems_ray.quant import quantize_subnet
from ems_ray.space import Genome
from ems_ray.stats import mean_sd
from ems_ray.supernet.checkpoint import load_supernet

from _tables import print_table

METHODS = ("finetune", "float-0", "qa-max", "qa-kl")
FIELDS = ("pair", "kind", "method", "fp_acc", "quant_acc", "seconds", "supernet_sha256", "genes")


def pairs(genome: Genome, n_random: int, n_w4a4: int, seed: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng([seed, 17])
    rows = [("random", r) for r in genome.sample(rng, n_random)]
    rows += [("w4a4", r) for r in genome.with_bits(genome.sample(rng, n_w4a4), 4)]
    return rows


def recipe_for(method: str, base):
    if method == "finetune":
        return base
    calibration = "max" if method == "qa-max" else "kl"
    return base.model_copy(update={"finetune_steps": 0, "calibration": calibration})


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/fmnist-full.yaml", help="the float run (data, recipe)")
    parser.add_argument("--float", dest="float_path", default="results/fmnist-full/supernet.pt")
    parser.add_argument("--qa", help="the quantization-aware super-network file")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--random", type=int, default=50)
    parser.add_argument("--w4a4", type=int, default=10)
    parser.add_argument("--val-images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/fmnist-qa/qa_vs_finetune.csv")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--report-from", nargs="*", default=None,
                        help="CSV files to report from together (default: --out)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_run_config(args.config)
    space = cfg.search_space()
    genome = Genome(space)
    base = cfg.collect.quant_recipe or cfg.quant
    out = Path(args.out)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"--methods: {sorted(unknown)} not allowed; allowed values: {list(METHODS)}")
    if any(m.startswith("qa") for m in methods) and not args.qa and not args.report_only:
        parser.error("--qa: the quantization-aware super-network file is needed for methods qa-max and qa-kl")
    todo = pairs(genome, args.random, args.w4a4, cfg.seed)
    if not args.report_only:
        splits = build_splits(cfg.data)
        train = make_loader(splits.train, cfg.data.batch_size, shuffle=True, seed=0)
        val = make_loader(Subset(splits.val, range(min(args.val_images, len(splits.val)))), cfg.data.eval_batch_size)
        nets = {"float": (load_supernet(Path(args.float_path), space), file_sha256(Path(args.float_path)))}
        if args.qa:
            nets["qa"] = (load_supernet(Path(args.qa), space), file_sha256(Path(args.qa)))
        done = {(r["pair"], r["method"]) for r in read_rows(out)}
        out.parent.mkdir(parents=True, exist_ok=True)
        new_file = not out.is_file()
        with open(out, "a", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            if new_file:
                writer.writeheader()
            for method in methods:
                net, sha = nets["qa" if method.startswith("qa") else "float"]
                for i, (kind, row) in enumerate(todo):
                    if (str(i), method) in done:
                        continue
                    t0 = time.perf_counter()
                    r = quantize_subnet(net, genome.to_config(row), recipe_for(method, base), train, val, seed=i)
                    writer.writerow({"pair": i, "kind": kind, "method": method, "fp_acc": r.fp_acc,
                                     "quant_acc": r.quant_acc, "seconds": time.perf_counter() - t0,
                                     "supernet_sha256": sha[:12], "genes": " ".join(map(str, row.tolist()))})
                    f.flush()
                    print(f"pair {i} {kind} {method}: float {r.fp_acc:.4f} quantized {r.quant_acc:.4f} "
                          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    sources = [Path(f) for f in args.report_from] if args.report_from else [out]
    report([row for source in sources for row in read_rows(source)], len(todo))


def paired_gaps(rows: list[dict], by: dict, column: str) -> list[float]:
    """`column` of each row minus the same pair's fine-tune row, in points (pairs with one only)."""
    return [100 * (float(r[column]) - float(by[(int(r["pair"]), "finetune")][column]))
            for r in rows if (int(r["pair"]), "finetune") in by]


def report(rows: list[dict], n_pairs: int) -> None:
    by = {(int(r["pair"]), r["method"]): r for r in rows if int(r["pair"]) < n_pairs}
    table = []
    for method in METHODS:
        got = [r for (i, m), r in by.items() if m == method]
        if not got:
            continue
        for kind in ("random", "w4a4"):
            sel = [r for r in got if r["kind"] == kind]
            if not sel:
                continue
            q = mean_sd([100 * float(r["quant_acc"]) for r in sel])
            fp = mean_sd([100 * float(r["fp_acc"]) for r in sel])["mean"]
            gaps, fp_gaps = (paired_gaps(sel, by, column) for column in ("quant_acc", "fp_acc"))
            secs = float(np.median([float(r["seconds"]) for r in sel]))
            table.append((method, kind, len(sel), f"{q['mean']:.2f} ± {q['sd'] or 0:.2f}", f"{fp:.2f}",
                          f"{np.mean(gaps):+.2f} (worst {min(gaps):+.2f})" if gaps else "-",
                          f"{np.mean(fp_gaps):+.2f}" if fp_gaps else "-", f"{secs:.1f}"))
    print_table("Quantized accuracy (%, validation images) against the fine-tune recipe on the same pairs",
                ("method", "pairs", "n", "quantized mean ± sd", "float", "Δ vs finetune (pts)",
                 "float Δ (pts)", "s/point (median)"), table)


if __name__ == "__main__":
    main()

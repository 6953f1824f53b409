"""Quality of a trained super network without retraining: the largest, the smallest and N random
sub-nets, each extracted, BN-recalibrated and evaluated on the whole validation split.

    .venv/bin/python benchmarks/supernet_quality.py --config configs/fmnist-full.yaml [--random 100]

Prints a table and writes one CSV row per sub-net (`--csv`).
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from ems_ray.data import make_loader
from ems_ray.hardware import build_lut
from ems_ray.space import Genome
from ems_ray.train.progressive import eval_subnets, validate

from _trained_run import load_trained_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--random", type=int, default=100)
    parser.add_argument("--bn-batches", type=int, default=8, help="batches of 500 training images")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the random sub-nets (not the training seed)")
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    cfg, net, splits = load_trained_run(args.config)
    space = cfg.search_space()
    bn_loader = make_loader(splits.train, batch_size=cfg.data.eval_batch_size, shuffle=True, seed=args.seed)
    val_loader = make_loader(splits.val, batch_size=cfg.data.eval_batch_size)
    nets = eval_subnets(space, args.seed, args.random)
    t0 = time.perf_counter()
    acc = validate(net, nets, bn_loader, val_loader, args.bn_batches, None, torch.device("cpu"))
    seconds = time.perf_counter() - t0
    genome = Genome(space)
    genes = np.stack([nets[k] for k in nets])
    cost = build_lut(space).score(genome.with_bits(genes, 8))
    rand = np.array([acc[f"val_acc_{k}"] for k in nets if k.startswith("random")])
    print(f"super network {cfg.run_dir}/supernet/supernet.pt on {len(splits.val)} validation images "
          f"({len(nets)} sub-nets in {seconds:.0f} s, {seconds / len(nets):.2f} s each)")
    print(f"{'sub-net':<12}{'val acc':>9}{'MMACs':>9}{'ms (W8A8)':>11}")
    for i, name in enumerate(list(nets)[:2]):
        print(f"{name:<12}{acc[f'val_acc_{name}']:>9.4f}{cost['macs'][i] / 1e6:>9.2f}{cost['latency_ms'][i]:>11.3f}")
    if len(rand):
        q = np.percentile(rand, [0, 5, 50, 95, 100])
        print(f"random x{len(rand)}: mean {rand.mean():.4f} std {rand.std():.4f} min {q[0]:.4f} p5 {q[1]:.4f} "
              f"median {q[2]:.4f} p95 {q[3]:.4f} max {q[4]:.4f} spread {q[4] - q[0]:.4f}")
        corr = np.corrcoef(rand, cost["macs"][2:])[0, 1]
        print(f"correlation of accuracy with MACs over the random sub-nets: {corr:.2f}")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["subnet", "val_acc", "macs", "latency_ms_w8a8", "genes"])
            for i, name in enumerate(nets):
                w.writerow([name, acc[f"val_acc_{name}"], int(cost["macs"][i]), cost["latency_ms"][i],
                            " ".join(map(str, genes[i]))])


if __name__ == "__main__":
    main()

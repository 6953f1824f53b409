"""Quantization of sub-nets taken from a trained super network, without retraining them:
float vs W8A8 and W4A4 after calibration only, and W4A4 after a short distilled fine-tune.

    .venv/bin/python benchmarks/quant_on_supernet.py --config configs/fmnist-full.yaml [--steps 200]
"""
from __future__ import annotations

import argparse

from ems_ray.data import make_loader
from ems_ray.quant import quantize_subnet
from ems_ray.space import Genome

from _trained_run import load_trained_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    cfg, net, splits = load_trained_run(args.config)
    space = cfg.search_space()
    train = make_loader(splits.train, cfg.data.batch_size, shuffle=True, seed=cfg.seed)
    val = make_loader(splits.val, cfg.data.eval_batch_size)
    genome = Genome(space)
    print(f"{'sub-net':<10}{'policy':<8}{'fine-tune':>10}{'float':>9}{'quantized':>11}{'delta':>8}{'seconds':>9}")
    for name, row in (("largest", genome.largest()[0]), ("smallest", genome.smallest()[0])):
        for bits, steps in ((8, 0), (4, 0), (4, args.steps)):
            sub = genome.to_config(genome.with_bits(row, bits)[0])
            recipe = cfg.quant.model_copy(update={"finetune_steps": steps})
            r = quantize_subnet(net, sub, recipe, train, val, seed=cfg.seed)
            print(f"{name:<10}{f'W{bits}A{bits}':<8}{steps:>10}{r.fp_acc:>9.4f}{r.quant_acc:>11.4f}"
                  f"{100 * (r.quant_acc - r.fp_acc):>+8.2f}{r.seconds:>9.0f}")


if __name__ == "__main__":
    main()

"""Profile sub-nets of the fmnist-small space (and candidate variants) on this CPU.

For the largest and smallest sub-net of each space: training images/s with the super network
active (batch 128, SGD, channels_last), the same with a distillation teacher forward, eval and
BN-recalibration images/s, the cost of one full-precision sample (recalibrate on 1k images,
evaluate on 2k), parameters and MACs. `--epoch-check` trains the largest sub-net for one epoch
on Fashion-MNIST and reports validation accuracy, a sanity check of the space's capacity.

    python benchmarks/profile_fmnist_small.py [--variants base,...] [--epoch-check]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ems_ray.space import SearchSpace, load_preset
from ems_ray.supernet import ElasticSuperNet, evaluate, recalibrate_bn

# Candidate spaces tried while sizing the preset: overrides of fmnist-small's YAML fields.
VARIANTS: dict[str, dict] = {
    "preset": {},
    # DESIGN.md's slow reference: stride-2 stem, four stages of three blocks, 24/32/64/96.
    "design-ref": {
        "stem": {"out_channels": 24, "kernel": 3, "stride": 2},
        "first_block": {"out_channels": 24, "kernel": 3, "stride": 1},
        "stages": [
            {"out_channels": 24, "stride": 1, "depth_choices": [2, 3]},
            {"out_channels": 32, "stride": 2, "depth_choices": [2, 3]},
            {"out_channels": 64, "stride": 1, "depth_choices": [2, 3]},
            {"out_channels": 96, "stride": 2, "depth_choices": [2, 3]},
        ],
        "channel_step": 8, "head_channels": 256,
    },
}


def build_space(name: str) -> SearchSpace:
    base = load_preset("fmnist-small").model_dump()
    base.update(VARIANTS[name])
    base["name"] = "fmnist-small" if name == "preset" else f"fmnist-{name}"
    return SearchSpace.model_validate(base)


def count_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one image through every Conv2d and Linear."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


def _rate(step, batch: int, iters: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    return batch * iters / (time.perf_counter() - t)


def profile(space: SearchSpace, iters: int, batch: int = 128) -> list[dict]:
    torch.manual_seed(0)
    net = ElasticSuperNet(space).to(memory_format=torch.channels_last)
    shape = (space.image_channels, space.input_resolution, space.input_resolution)
    x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (batch,))
    teacher = net.extract(net.genome.largest()[0]).eval()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=4e-5)
    rows = []
    for label, genes in (("largest", net.genome.largest()[0]), ("smallest", net.genome.smallest()[0])):
        net.set_active(genes)
        static = net.extract()

        def train_step(kd: bool) -> None:
            net.train()
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            if kd:
                with torch.no_grad():
                    soft = F.softmax(teacher(x), dim=1)
                loss = loss + F.kl_div(F.log_softmax(logits, dim=1), soft, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        ex = x[:100].repeat(5, 1, 1, 1).contiguous(memory_format=torch.channels_last)

        def eval_step() -> None:
            with torch.inference_mode():
                static.eval()(ex)

        def recal_step() -> None:
            with torch.no_grad():
                static.train()(ex)

        train = _rate(lambda: train_step(False), batch, iters)
        train_kd = _rate(lambda: train_step(True), batch, iters)
        ev = _rate(eval_step, len(ex), max(2, iters // 2))
        rc = _rate(recal_step, len(ex), max(2, iters // 2))
        rows.append({
            "space": space.name, "subnet": label, "train": train, "train_kd": train_kd, "eval": ev, "recal": rc,
            "sample_s": 1000 / rc + 2000 / ev,
            "params": sum(p.numel() for p in static.parameters()), "macs": count_macs(static, shape),
        })
    return rows


def epoch_check(space: SearchSpace, epochs: float, lr: float) -> tuple[float, float]:
    """Train the largest sub-net (super network active) on Fashion-MNIST; (val acc, seconds)."""
    from ems_ray.data import DataConfig, build_splits, make_loader

    torch.manual_seed(0)
    splits = build_splits(DataConfig())
    train = make_loader(splits.train, 128, shuffle=True, seed=0, drop_last=True)
    val = make_loader(splits.val, 500)
    net = ElasticSuperNet(space).to(memory_format=torch.channels_last)
    steps = int(epochs * len(train))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15)
    t, step = time.perf_counter(), 0
    net.train()
    while step < steps:
        for images, labels in train:
            loss = F.cross_entropy(net(images.contiguous(memory_format=torch.channels_last)), labels, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= steps:
                break
    seconds = time.perf_counter() - t
    acc, _ = evaluate(net, val)
    return acc, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="preset", help=f"comma-separated, from {list(VARIANTS)}")
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epoch-check", action="store_true")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=0.2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128, channels_last")
    print(f"{'space':<22}{'subnet':<9}{'train/s':>8}{'+KD/s':>8}{'eval/s':>8}{'recal/s':>8}{'sample_s':>9}{'params':>9}{'MMACs':>7}")
    for name in args.variants.split(","):
        space = build_space(name)
        for r in profile(space, args.iters):
            print(f"{r['space']:<22}{r['subnet']:<9}{r['train']:>8.0f}{r['train_kd']:>8.0f}{r['eval']:>8.0f}"
                  f"{r['recal']:>8.0f}{r['sample_s']:>9.2f}{r['params'] / 1e6:>8.3f}M{r['macs'] / 1e6:>7.2f}", flush=True)
        if args.epoch_check:
            acc, seconds = epoch_check(space, args.epochs, args.lr)
            print(f"{space.name}: largest sub-net, {args.epochs:g} epoch(s): val acc {acc:.4f} in {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()

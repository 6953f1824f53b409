"""Profile sub-nets of the fmnist-small space (and candidate variants) on this CPU.

For the largest, the smallest and a random sub-net of each space: training images/s with the
super network active (batch 128, SGD, channels_last), the same with a distillation teacher
forward (the largest sub-net, extracted), eval and BN-recalibration images/s (batches of 250),
the cost of one full-precision sample (recalibrate on 1k images, evaluate on 2k), parameters and
MACs. The random row resamples its sub-net every training step (as the width phase does); its
eval/params/MACs are those of the first sample. `--epoch-check` trains sub-nets alone on
Fashion-MNIST and reports validation accuracy, a sanity check of the space's capacity.

Run it on an otherwise idle machine: with two intra-op threads on two cores, any other busy
process (a training run, a test suite) slows every step many times over.

    python benchmarks/profile_fmnist_small.py [--variants preset,draft,...] [--epoch-check --epochs 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ems_ray.space import SearchSpace, load_preset
from ems_ray.supernet import ElasticSuperNet, evaluate

def _stages(*specs: tuple[int, int, list[int]]) -> list[dict]:
    return [{"out_channels": c, "stride": s, "depth_choices": d} for c, s, d in specs]


# Candidate spaces tried while sizing the preset: overrides of fmnist-small's YAML fields.
VARIANTS: dict[str, dict] = {
    "preset": {},  # fmnist-small.yaml as shipped (chosen: all7 with depth choices {1, 2, 3})
    # DESIGN.md's slow reference: stride-2 stem, four stages of three blocks, 24/32/64/96.
    "design-ref": {
        "stem": {"out_channels": 24, "kernel": 3, "stride": 2},
        "first_block": {"out_channels": 24, "kernel": 3, "stride": 1},
        "stages": _stages((24, 1, [2, 3]), (32, 2, [2, 3]), (64, 1, [2, 3]), (96, 2, [2, 3])),
        "channel_step": 8, "head_channels": 256,
    },
    # The first draft preset: stage 0 at stride 1, three blocks of up to 144 mid channels at 14x14.
    "draft": {
        "stem": {"out_channels": 16, "kernel": 3, "stride": 2},
        "first_block": {"out_channels": 16, "kernel": 3, "stride": 1},
        "stages": _stages((24, 1, [2, 3]), (32, 2, [2, 3]), (48, 2, [2, 3]), (64, 1, [1])),
        "channel_step": 8, "head_channels": 256,
    },
    # No searchable block at 14x14: stage 0 downsamples to 7x7 at once.
    "all7": {
        "stem": {"out_channels": 16, "kernel": 3, "stride": 2},
        "first_block": {"out_channels": 16, "kernel": 3, "stride": 1},
        "stages": _stages((24, 2, [2, 3]), (32, 1, [2, 3]), (48, 2, [2, 3]), (64, 1, [1])),
        "channel_step": 8, "head_channels": 256,
    },
    # all7 with depth choices {1, 2, 3}: the same largest sub-net, a much smaller smallest one.
    "all7-d123": {
        "stem": {"out_channels": 16, "kernel": 3, "stride": 2},
        "first_block": {"out_channels": 16, "kernel": 3, "stride": 1},
        "stages": _stages((24, 2, [1, 2, 3]), (32, 1, [1, 2, 3]), (48, 2, [1, 2, 3]), (64, 1, [1])),
        "channel_step": 8, "head_channels": 256,
    },
    # One or two narrow blocks at 14x14 (16 channels, mid 64-96), then 7x7 and 4x4 stages.
    "narrow14": {
        "stem": {"out_channels": 16, "kernel": 3, "stride": 2},
        "first_block": {"out_channels": 16, "kernel": 3, "stride": 1},
        "stages": _stages((16, 1, [1, 2]), (24, 2, [2, 3]), (40, 1, [2, 3]), (64, 2, [2, 3])),
        "channel_step": 8, "head_channels": 256,
    },
    # As narrow14 with step 4 and a narrower 14x14 stage (12 channels, mid 48-72).
    "narrow14-s4": {
        "stem": {"out_channels": 12, "kernel": 3, "stride": 2},
        "first_block": {"out_channels": 12, "kernel": 3, "stride": 1},
        "stages": _stages((16, 1, [1, 2]), (24, 2, [2, 3]), (40, 1, [2, 3]), (64, 2, [2, 3])),
        "channel_step": 4, "head_channels": 256,
    },
}


VERBOSE = False


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


def _rate(step, batch: int, iters: int, warmup: int = 3) -> float:
    """Images/s from the median step time: robust to the odd slow step on a shared VM."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    if VERBOSE:
        print("   step ms:", [round(1000 * t) for t in times])
    return batch / float(np.median(times))


def profile(space: SearchSpace, iters: int, batch: int = 128) -> list[dict]:
    torch.manual_seed(0)
    net = ElasticSuperNet(space).to(memory_format=torch.channels_last)
    shape = (space.image_channels, space.input_resolution, space.input_resolution)
    x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (batch,))
    teacher = net.extract(net.genome.largest()[0]).eval()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=4e-5)
    rows = []
    rng = np.random.default_rng(0)
    for label in ("largest", "smallest", "random"):
        # "random": a new uniformly sampled sub-net every step, as in the width phase.
        genes = {"largest": net.genome.largest()[0], "smallest": net.genome.smallest()[0]}.get(label)
        net.set_active(genes if genes is not None else net.genome.sample(rng, 1)[0])
        static = net.extract()

        def train_step(kd: bool) -> None:
            if genes is None:
                net.sample_active(rng)
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

        # Evaluation in batches of 250: on this CPU larger batches fall out of cache and run slower.
        ex = x[:125].repeat(2, 1, 1, 1).contiguous(memory_format=torch.channels_last)

        def eval_step() -> None:
            with torch.inference_mode():
                static.eval()(ex)

        def recal_step() -> None:
            with torch.no_grad():
                static.train()(ex)

        train = _rate(lambda: train_step(False), batch, iters)
        train_kd = _rate(lambda: train_step(True), batch, iters)
        ev = _rate(eval_step, len(ex), iters)
        rc = _rate(recal_step, len(ex), iters)
        rows.append({
            "space": space.name, "subnet": label, "train": train, "train_kd": train_kd, "eval": ev, "recal": rc,
            "sample_s": 1000 / rc + 2000 / ev,
            "params": sum(p.numel() for p in static.parameters()), "macs": count_macs(static, shape),
        })
    return rows


def epoch_check(space: SearchSpace, epochs: float, lr: float, subnet: str = "largest") -> tuple[float, float]:
    """Train one sub-net alone (super network active) on Fashion-MNIST; (val acc, seconds)."""
    from ems_ray.data import DataConfig, build_splits, make_loader

    torch.manual_seed(0)
    splits = build_splits(DataConfig())
    train = make_loader(splits.train, 128, shuffle=True, seed=0, drop_last=True)
    val = make_loader(splits.val, 500)
    net = ElasticSuperNet(space).to(memory_format=torch.channels_last)
    net.set_active(getattr(net.genome, subnet)()[0])
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
    parser.add_argument("--epoch-subnets", default="largest", help="largest,smallest")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print every timed step")
    args = parser.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128, channels_last")
    print(f"{'space':<22}{'subnet':<9}{'train/s':>8}{'+KD/s':>8}{'eval/s':>8}{'recal/s':>8}{'sample_s':>9}{'params':>9}{'MMACs':>7}")
    for name in args.variants.split(","):
        space = build_space(name)
        for r in [] if args.skip_profile else profile(space, args.iters):
            print(f"{r['space']:<22}{r['subnet']:<9}{r['train']:>8.0f}{r['train_kd']:>8.0f}{r['eval']:>8.0f}"
                  f"{r['recal']:>8.0f}{r['sample_s']:>9.2f}{r['params'] / 1e6:>8.3f}M{r['macs'] / 1e6:>7.2f}", flush=True)
        for subnet in args.epoch_subnets.split(",") if args.epoch_check else []:
            acc, seconds = epoch_check(space, args.epochs, args.lr, subnet)
            print(f"{space.name}: {subnet} sub-net trained alone, {args.epochs:g} epoch(s): "
                  f"val acc {acc:.4f} in {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()

"""Quantization speed and quality on Fashion-MNIST.

    .venv/bin/python benchmarks/bench_quant.py              # speed: calibrate, 100-step fine-tune, fake-quant overhead
    .venv/bin/python benchmarks/bench_quant.py --quality    # train the largest sub-net, then FP vs W8A8 vs W4A4

Speed uses a sampled mixed-precision `fmnist-small` sub-net (random weights: speed does not
depend on them). Quality trains the largest `fmnist-small` static sub-net on a training subset,
then measures every variant the same way: BN statistics re-estimated on `--bn-batches` training
batches, accuracy on the validation subset. One thread by default, to share the machine.
"""
from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _tables import print_table

from ems_ray.data import DataConfig, build_splits, make_loader
from ems_ray.quant import (
    QuantPolicy, apply_policy, calibrate, distillation_loss, evaluate_quantized, export_quantized, load_exported,
    quant_layers, quantization_aware_finetune, quantization_disabled,
)
from ems_ray.space import Genome, load_preset
from ems_ray.supernet import ElasticSuperNet, evaluate, recalibrate_bn


def _images_per_s(model, x: torch.Tensor, reps: int) -> float:
    with torch.inference_mode():
        model(x)
        t0 = time.perf_counter()
        for _ in range(reps):
            model(x)
    return reps * len(x) / (time.perf_counter() - t0)


def fake_quantize_kernels(reps: int = 10) -> list[tuple]:
    """ems_ray.quantizers.fake_quantize against torch.fake_quantize_per_tensor_affine on one
    activation-sized tensor (500 × 288 × 7 × 7, channels_last), inference and training (with grad)."""
    from ems_ray.quantizers import fake_quantize

    x = torch.randn(500, 288, 7, 7).contiguous(memory_format=torch.channels_last)
    v, n = torch.tensor(3.0), 7
    scale, zero = (v / n).reshape(1), torch.zeros(1, dtype=torch.int32)
    kernels = {"ems_ray fake_quantize": lambda t: fake_quantize(t, v, 4, True),
               "torch fake_quantize_per_tensor_affine": lambda t: torch.fake_quantize_per_tensor_affine(
                   t, scale, zero, -n, n)}
    rows, times = [], {}
    for mode in ("inference", "forward + backward"):
        for name, kernel in kernels.items():
            t = x.detach().requires_grad_(mode != "inference")
            ctx = torch.inference_mode() if mode == "inference" else torch.enable_grad()
            with ctx:
                kernel(t)
                t0 = time.perf_counter()
                for _ in range(reps):
                    out = kernel(t)
                    if mode != "inference":
                        out.sum().backward()
            times[name] = (time.perf_counter() - t0) / reps
        ours, theirs = times.values()
        rows += [(f"{name}, {mode}", f"{1e3 * sec:.0f} ms", "") for name, sec in times.items()]
        rows[-1] = (*rows[-1][:2], f"ours {theirs / ours:.1f}x faster")
    return rows


# ----- speed -------------------------------------------------------------------------------------------
def speed(args) -> None:
    space = load_preset("fmnist-small")
    genome = Genome(space)
    cfg = genome.to_config(genome.sample(np.random.default_rng(0), 1)[0])
    torch.manual_seed(0)
    net = ElasticSuperNet(space).extract(cfg).eval()
    splits = build_splits(DataConfig(train_subset=args.batch * 120, val_subset=512, augment=False))
    loader = make_loader(splits.train, args.batch, shuffle=True, seed=0)
    recalibrate_bn(net, loader, 4)

    rows = []
    t0 = time.perf_counter()
    q = apply_policy(net, QuantPolicy.from_subnet(cfg, space))
    layers = f"{len(quant_layers(q))} layers"
    rows.append(("apply_policy (weight KL ranges)", f"{time.perf_counter() - t0:.2f} s", layers))
    t0 = time.perf_counter()
    calibrate(q, loader, args.calib_batches)
    rows.append(("calibrate", f"{time.perf_counter() - t0:.2f} s", f"{args.calib_batches} batches of {args.batch}"))
    result = quantization_aware_finetune(q, loader, steps=args.steps, lr=0.005, teacher=net, seed=0)
    rows.append((f"fine-tune {args.steps} steps (distilled)", f"{result.seconds:.1f} s",
                 f"{args.steps * args.batch / result.seconds:.0f} images/s"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export_quantized(q, cfg, q.quant_policy, tmp, calibration=loader)
        rows.append(("export ONNX + sidecar", f"{time.perf_counter() - t0:.1f} s", ""))
        exported = load_exported(tmp, num_threads=torch.get_num_threads())
        x = torch.randn(args.eval_batch, 1, 28, 28)
        q.eval()
        fp = _images_per_s(net, x, args.reps)
        fq = _images_per_s(q, x, args.reps)
        with quantization_disabled(q):
            off = _images_per_s(q, x, args.reps)
        ort = _images_per_s(exported, x, args.reps)
    print_table(f"Quantization speed ({torch.get_num_threads()} thread(s), sub-net {sum(cfg.depths)} blocks)",
           ("step", "time", "note"), rows)
    print_table("Fake-quantize kernel, 4 bits, one 500x288x7x7 activation", ("kernel", "time", "ratio"),
                fake_quantize_kernels())
    print_table(f"Inference, batch {args.eval_batch}", ("model", "images/s", "vs float"), [
        ("float sub-net", f"{fp:.0f}", "1.00x"),
        ("fake-quant, quantizers off", f"{off:.0f}", f"{fp / off:.2f}x slower"),
        ("fake-quant (W/A per policy)", f"{fq:.0f}", f"{fp / fq:.2f}x slower"),
        ("ONNX Runtime (integer export)", f"{ort:.0f}", f"{ort / fp:.2f}x the PyTorch float speed"),
    ])


# ----- quality -----------------------------------------------------------------------------------------
def _train_fp(net, loader, epochs: float, lr: float, seed: int) -> float:
    steps = int(epochs * len(loader))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    torch.manual_seed(seed)
    net.train()
    t0, step = time.perf_counter(), 0
    while step < steps:
        for images, labels in loader:
            loss = F.cross_entropy(net(images), labels, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= steps:
                break
    net.eval()
    return time.perf_counter() - t0


def _finetune_fp(net, teacher, loader, steps: int, lr: float, seed: int) -> None:
    """The control: the float net fine-tuned with the quantized fine-tune's recipe and data, so
    that recovery from fine-tuning is not confused with the gain from simply training longer."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True)
    loader.generator.manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net.train()
        batches = iter(loader)
        for step in range(steps):
            try:
                images, labels = next(batches)
            except StopIteration:
                batches = iter(loader)
                images, labels = next(batches)
            for group in opt.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / steps))
            logits = net(images)
            with torch.no_grad():
                target = teacher(images)
            loss = F.cross_entropy(logits, labels) + distillation_loss(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()


def quality(args) -> None:
    space = load_preset("fmnist-small")
    genome = Genome(space)
    cfg = genome.to_config(genome.largest(bits=8)[0])
    data = DataConfig(train_subset=args.train_images, val_subset=args.val_images, augment=False)
    splits = build_splits(data)
    train = make_loader(splits.train, args.batch, shuffle=True, seed=0, drop_last=True)
    bn = make_loader(splits.train, 128, shuffle=True, seed=1)
    val = make_loader(splits.val, 500)

    torch.manual_seed(0)
    net = ElasticSuperNet(space).extract(cfg)
    cache = Path(args.fp_cache) if args.fp_cache else None
    if cache is not None and cache.is_file():
        net.load_state_dict(torch.load(cache, weights_only=True))
        train_s = 0.0
    else:
        train_s = _train_fp(net, train, args.epochs, args.lr, seed=0)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), cache)
    net.eval()

    def bn_eval(model) -> float:
        return evaluate_quantized(model, bn, val, args.bn_batches)[0]

    rows = []
    fp_acc = bn_eval(net)
    rows.append(("FP32", "-", f"{100 * fp_acc:.2f}", "-"))

    def add(label: str, model, how: str) -> float:
        acc = bn_eval(model)
        rows.append((label, how, f"{100 * acc:.2f}", f"{100 * (acc - fp_acc):+.2f}"))
        return acc

    w8 = apply_policy(net, QuantPolicy.uniform(cfg, space, 8, 8))
    calibrate(w8, bn, args.calib_batches)
    add("W8A8", w8, "calibrated (KL)")
    w4max = apply_policy(net, QuantPolicy.uniform(cfg, space, 4, 4), weight_method="max")
    calibrate(w4max, bn, args.calib_batches, method="max")
    add("W4A4", w4max, "calibrated (max-abs)")
    w4 = apply_policy(net, QuantPolicy.uniform(cfg, space, 4, 4))
    calibrate(w4, bn, args.calib_batches)
    add("W4A4", w4, "calibrated (KL)")
    t0 = time.perf_counter()
    quantization_aware_finetune(w4, train, steps=args.ft_steps, lr=args.ft_lr, teacher=net, seed=0)
    ft_s = time.perf_counter() - t0
    acc_ft = add("W4A4", w4, f"+ {args.ft_steps}-step distilled fine-tune")
    fp_ft = copy.deepcopy(net)
    _finetune_fp(fp_ft, net, train, args.ft_steps, args.ft_lr, seed=0)
    add("FP32 (control)", fp_ft, f"+ the same {args.ft_steps}-step fine-tune")

    with tempfile.TemporaryDirectory() as tmp:
        from ems_ray.hardware import build_lut

        files = export_quantized(w4, cfg, w4.quant_policy, tmp, cost=build_lut(space), calibration=train,
                                 metrics={"val_acc": acc_ft})
        exported = load_exported(tmp, num_threads=torch.get_num_threads())
        acc_onnx = evaluate(exported, val)[0]
        rows.append(("W4A4 ONNX reload", "ONNX Runtime, integer kernels", f"{100 * acc_onnx:.2f}",
                     f"{100 * (acc_onnx - fp_acc):+.2f}"))
        hw = exported.sidecar["hardware"]
        size_kb = files.onnx.stat().st_size / 1024

    print_table(f"Quantization quality: largest fmnist-small sub-net, {args.epochs} epoch(s) on {args.train_images} "
           f"images ({f'{train_s:.0f} s' if train_s else 'cached'}), {args.val_images} val images, BN re-estimated on {args.bn_batches} batches",
           ("model", "how", "val acc %", "vs FP"), rows)
    print(f"\nfine-tune: {ft_s:.0f} s; export: {size_kb:.0f} KiB ONNX, BitFusion W4A4 "
          f"{hw['latency_ms']:.3f} ms / {hw['energy_mj']:.4f} mJ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true", help="run the accuracy check instead of the speed table")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--calib-batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100, help="fine-tune steps (speed)")
    parser.add_argument("--eval-batch", type=int, default=256)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--train-images", type=int, default=15000)
    parser.add_argument("--val-images", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--bn-batches", type=int, default=20)
    parser.add_argument("--ft-steps", type=int, default=200)
    parser.add_argument("--ft-lr", type=float, default=0.005)
    parser.add_argument("--fp-cache", default=None, help="save/load the trained float sub-net here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quality(args) if args.quality else speed(args)


if __name__ == "__main__":
    main()

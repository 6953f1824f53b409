"""Super-network speed: a progressive-shrinking step in plain PyTorch vs inside Ray Train, and
eval with a sub-net active in the super network vs the extracted static sub-net.

    .venv/bin/python benchmarks/bench_supernet.py [--steps 30] [--batch 128]

Prints a table; the ratios are what matter (both sides run in the same invocation). Ray Train
runs twice: with its workers at Ray's default niceness (15) and at ours (0, `ems_ray.ray_session`).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ems_ray.ray_session import local_ray
from ems_ray.space import Genome, load_preset
from ems_ray.supernet import ElasticSuperNet
from ems_ray.train import PhaseConfig
from ems_ray.train.progressive import SubnetStep

PHASE = PhaseConfig(name="width", epochs=1, lr=0.05, width_fraction=1.0, subnets_per_step=2)


def time_ps_steps(steps: int, batch: int, threads: int, warmup: int = 3) -> float:
    """Images/s of progressive-shrinking steps (teacher forward + 2 sub-nets) on random data."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    space = load_preset("fmnist-small")
    genome = Genome(space)
    net = ElasticSuperNet(space).to(memory_format=torch.channels_last)
    teacher = ElasticSuperNet(space).to(memory_format=torch.channels_last).eval()
    teacher.set_active(genome.largest()[0])
    model = SubnetStep(net, label_smoothing=0.1, kd_ratio=1.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        with torch.no_grad():
            soft = F.softmax(teacher(x), dim=1)
        rows = PHASE.sample(genome, np.random.default_rng(i), PHASE.subnets_per_step)
        loss = model(x, y, soft, rows, PHASE.quantized_mask())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def ray_train_images_per_s(steps: int, batch: int, threads: int, niceness: int) -> float:
    import ray
    import ray.train
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def loop(config):
        ips = time_ps_steps(config["steps"], config["batch"], config["threads"])
        Path(config["out"]).write_text(str(ips))  # Train V2 keeps metrics only with checkpoints
        ray.train.report({"ips": ips})

    out = Path(tempfile.mkdtemp()) / "ips.txt"
    with local_ray(num_cpus=threads, include_dashboard=True, log_to_driver=False,
                   _system_config={"worker_niceness": niceness}):
        trainer = TorchTrainer(
            loop, train_loop_config={"steps": steps, "batch": batch, "threads": threads, "out": str(out)},
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": threads}),
            run_config=RunConfig(name=f"bench-{os.getpid()}", storage_path="/tmp/ems-ray-bench"),
        )
        result = trainer.fit()
        if result.error is not None:
            raise RuntimeError(f"Ray Train run failed: {result.error}")
        return float(out.read_text())


def eval_images_per_s(batch: int, threads: int, reps: int = 20) -> tuple[float, float]:
    """(super network with a sub-net active, extracted static sub-net) eval images/s."""
    torch.set_num_threads(threads)
    space = load_preset("fmnist-small")
    genome = Genome(space)
    row = genome.sample(np.random.default_rng(1), 1)[0]
    net = ElasticSuperNet(space).eval()
    net.set_active(row)
    static = net.extract(genome.to_config(row)).eval()
    x = torch.randn(batch, 1, 28, 28)
    out = []
    for model in (net, static):
        model = model.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            model(xc)
            t0 = time.perf_counter()
            for _ in range(reps):
                model(xc)
        out.append(reps * batch / (time.perf_counter() - t0))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    plain = time_ps_steps(args.steps, args.batch, args.threads)
    ray_default = ray_train_images_per_s(args.steps, args.batch, args.threads, niceness=15)
    ray_ours = ray_train_images_per_s(args.steps, args.batch, args.threads, niceness=0)
    plain2 = time_ps_steps(args.steps, args.batch, args.threads)  # bracket the Ray runs: noise check
    sup, stat = eval_images_per_s(500, args.threads)
    base = (plain + plain2) / 2
    print(f"{'measure':<52}{'images/s':>12}")
    print(f"{'PS step (teacher + 2 sub-nets), plain PyTorch':<52}{base:>12.0f}")
    print(f"{'  (first / second plain run)':<52}{f'{plain:.0f} / {plain2:.0f}':>12}")
    print(f"{'PS step, Ray Train (1 worker), workers at nice 15':<52}{ray_default:>12.0f}")
    print(f"{'  ratio Ray Train / plain':<52}{ray_default / base:>12.2f}")
    print(f"{'PS step, Ray Train (1 worker), workers at nice 0':<52}{ray_ours:>12.0f}")
    print(f"{'  ratio Ray Train / plain (target >= 0.95)':<52}{ray_ours / base:>12.2f}")
    print(f"{'eval, super network with a sub-net active':<48}{sup:>12.0f}")
    print(f"{'eval, extracted static sub-net':<48}{stat:>12.0f}")
    print(f"{'  ratio static / super network':<48}{stat / sup:>12.2f}")


if __name__ == "__main__":
    main()

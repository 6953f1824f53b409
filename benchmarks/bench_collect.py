"""Collection speed: points per minute for FP and quantized points, in-process and on 1 or 2 Ray actors,
for each Ray backend (`collect.backend`: the hand-written actor pool and Ray Data), side by side.

    .venv/bin/python benchmarks/bench_collect.py --config configs/fmnist-full.yaml     # the trained super network
    .venv/bin/python benchmarks/bench_collect.py --config configs/fmnist-full.yaml --tiny   # a smoke run, seconds
    .venv/bin/python benchmarks/bench_collect.py --untrained --actors 0   # speed before a super network exists
    .venv/bin/python benchmarks/bench_collect.py --actors 1,2 --backends actor_pool,ray_data   # pool vs Ray Data

Each measurement collects the first points of the run's plans into a fresh temporary folder (so
nothing is skipped) with the run's `collect` settings, and reports two rates: end to end (actor
start-up and the data loading of every actor included) and steady (from the first written shard
to the last, i.e. what a long collection converges to). The backends run one after the other for
each (kind, actors), so a change in the machine's load hits both alike; the last table gives Ray
Data's rates as a ratio of the pool's. `--tiny` swaps in an untrained super network, 512/256-image
data subsets and a 1-step fine-tune to check that everything runs.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from ems_ray.collect import read_points, run_collect_stage
from ems_ray.config import load_run_config
from ems_ray.quant import QuantRecipe
from ems_ray.ray_session import ray_session
from ems_ray.supernet import ElasticSuperNet
from ems_ray.supernet.checkpoint import save_supernet


def _table(header: tuple[str, ...], rows: list[tuple]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for i, row in enumerate([header, *rows]):
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
        if i == 0:
            print("| " + " | ".join("-" * w for w in widths) + " |")


def measure(cfg, kind: str, points: int, actors: int | None, supernet: Path, shard: int,
            backend: str = "actor_pool") -> tuple:
    """One collection; `actors` None runs in this process."""
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp:
        res = cfg.collect.resources.model_copy(update={"min_actors": actors or 1, "max_actors": actors or 1})
        run = cfg.model_copy(update={"run_dir": Path(tmp), "collect": cfg.collect.model_copy(
            update={"resources": res, "points_per_shard": shard, "progress_every_s": 1e9, "backend": backend})})
        stamps: list[tuple[float, int]] = []
        t0 = time.monotonic()
        summary = run_collect_stage(run.context(), run.collect, kind, quant=run.quant, points=points,
                                    supernet_path=supernet, use_ray=actors is not None, log=lambda s: None,
                                    on_shard=lambda path, table: stamps.append((time.monotonic(), table.num_rows)))
        wall = time.monotonic() - t0
        table = read_points(summary.folder)
        steady = (sum(n for _, n in stamps[1:]) / (stamps[-1][0] - stamps[0][0]) * 60
                  if len(stamps) > 1 and stamps[-1][0] > stamps[0][0] else float("nan"))
        per_point = sum(table.column("wall_seconds").to_pylist()) / table.num_rows
        acc = table.column("accuracy").to_pylist()
        return (kind, "in-process" if actors is None else backend,
                "-" if actors is None else f"{actors} actor{'s' * (actors > 1)}", points,
                f"{wall:.1f}", f"{60 * points / wall:.1f}", f"{steady:.1f}", f"{per_point:.2f}",
                f"{min(acc):.3f}..{max(acc):.3f}"), acc


def _ratios(rows: list[tuple], base: str, other: str) -> list[tuple]:
    """`other`'s end-to-end and steady rates over `base`'s, per (kind, actors), each the mean of its runs."""
    rates: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        rates.setdefault((r[0], r[1], r[2]), []).append((float(r[5]), float(r[6])))
    mean = {key: [sum(col) / len(col) for col in zip(*runs)] for key, runs in rates.items()}
    return [(kind, actors, len(rates[(kind, other, actors)]),
             f"{mean[(kind, other, actors)][0] / mean[(kind, base, actors)][0]:.2f}",
             f"{mean[(kind, other, actors)][1] / mean[(kind, base, actors)][1]:.2f}")
            for kind, backend, actors in mean if backend == other and (kind, base, actors) in mean]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/fmnist-full.yaml")
    parser.add_argument("--supernet", help="default: <run_dir>/supernet/supernet.pt")
    parser.add_argument("--fp-points", type=int, default=48)
    parser.add_argument("--quant-points", type=int, default=8)
    parser.add_argument("--kinds", default="fp,quant")
    parser.add_argument("--actors", default="0,1,2", help="0 = in-process (no Ray)")
    parser.add_argument("--backends", default="actor_pool,ray_data", help="collect.backend values to compare")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per backend; every second round runs the backends in reverse order")
    parser.add_argument("--untrained", action="store_true",
                        help="an untrained super network (speed does not depend on the weights)")
    parser.add_argument("--tiny", action="store_true", help="untrained net, small data: a smoke run")
    args = parser.parse_args()

    cfg = load_run_config(args.config)
    supernet = Path(args.supernet or Path(cfg.run_dir) / "supernet" / "supernet.pt")
    tmp = None
    if args.tiny or args.untrained:
        tmp = tempfile.TemporaryDirectory(prefix="bench-collect-net-")
        supernet = Path(tmp.name) / "supernet.pt"
        space = cfg.search_space()
        torch.manual_seed(0)
        save_supernet(supernet, space, ElasticSuperNet(space).state_dict())
    if args.tiny:
        cfg = cfg.model_copy(update={
            "data": cfg.data.model_copy(update={"train_subset": 512, "val_subset": 256}),
            "collect": cfg.collect.model_copy(update={
                "bn_batches": 2, "val_images": 256,
                "quant_recipe": QuantRecipe(calib_batches=1, finetune_steps=1, bn_batches=1)})})
    kinds = args.kinds.split(",")
    recipe = cfg.collect.quant_recipe or cfg.quant
    note = " (--tiny)" if args.tiny else " (--untrained)" if args.untrained else ""
    print(f"config {args.config}{note}, supernet {supernet}; FP: {cfg.collect.bn_batches} "
          f"BN batches of {cfg.data.batch_size}, {cfg.collect.val_images} validation images; quant recipe: "
          f"{recipe.model_dump()}; each actor {cfg.collect.resources.num_cpus} CPU, "
          f"{cfg.collect.resources.torch_threads()} torch thread(s)")
    rows = []
    actor_counts = [int(x) for x in args.actors.split(",")]
    backends = args.backends.split(",")
    accuracies: dict[str, list[float]] = {}
    uses_ray = any(actor_counts)
    with ray_session(cfg.ray.model_copy(update={"include_dashboard": False})) if uses_ray else nullcontext():
        for kind in kinds:
            points = args.fp_points if kind == "fp" else args.quant_points
            for a in actor_counts:
                # enough shards per actor for a steady rate: about four per actor
                shard = max(1, points // (4 * max(a, 1)))
                rounds = [backends[::-1] if r % 2 else backends for r in range(args.repeat)]
                for backend in [b for order in rounds for b in order] if a else ["in-process"]:
                    row, acc = measure(cfg, kind, points, a or None, supernet, shard, backend)
                    same = accuracies.setdefault(kind, acc) == acc  # one plan: the same rows on every executor
                    rows.append((*row, "yes" if same else "NO"))
                    print(f"  done: {rows[-1]}", flush=True)
    print()
    _table(("kind", "executor", "actors", "points", "wall s", "points/min (end to end)", "points/min (steady)",
            "s/point (one actor)", "accuracy range", "accuracies = first row's"), rows)
    for other in backends[1:]:
        print(f"\n{other} / {backends[0]}:\n")
        _table(("kind", "actors", "runs each", "end-to-end rate ratio", "steady rate ratio"),
               _ratios(rows, backends[0], other))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

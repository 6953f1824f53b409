"""The `ems-ray` command: one sub-command per pipeline stage, each a thin call into its stage."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ems_ray.space import Encoding, preset_names, resolve_space


def _overrides(args: argparse.Namespace, **config_keys: str) -> dict:
    """Config overrides (dotted keys) from the command-line options that were given."""
    return {key: getattr(args, option) for option, key in config_keys.items() if getattr(args, option)}


def _cmd_space_show(args: argparse.Namespace) -> None:
    space = resolve_space(args.preset)
    enc = Encoding(space)
    print(f"search space '{space.name}': input {space.image_channels}x{space.input_resolution}^2, "
          f"{len(space.slots)} block slots, encoding {enc.version}: {enc.fp_dim} FP + {enc.quant_dim} quant "
          f"= {enc.dim} features")
    for s in space.slots:
        print(f"  slot {s.index:2d} stage {s.stage} pos {s.position}: {s.in_channels:4d}->{s.out_channels:4d} "
              f"stride {s.stride} {s.in_resolution}->{s.out_resolution}px mid {s.mid_choices[0]}..{s.mid_choices[-1]} "
              f"({len(s.mid_choices)} choices)")


def _cmd_lut_build(args: argparse.Namespace) -> None:
    from ems_ray.hardware import build_lut

    space = resolve_space(args.preset)
    t0 = time.perf_counter()
    table = build_lut(space, progress=True)
    out = Path(args.out) / f"lut-{space.name}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.save(out)
    print(f"built {out} in {time.perf_counter() - t0:.1f} s")
    print(table.summary())


def _cmd_train_supernet(args: argparse.Namespace) -> None:
    from ems_ray.config import load_run_config
    from ems_ray.train import run_supernet_stage

    cfg = load_run_config(args.config, _overrides(args, workers="supernet.workers"))
    run_supernet_stage(cfg, use_ray=not args.local)


def _cmd_export(args: argparse.Namespace) -> None:
    from ems_ray.config import load_run_config
    from ems_ray.quant.stage import export_subnet

    cfg = load_run_config(args.config)
    export_subnet(cfg, Path(args.subnet), args.supernet and Path(args.supernet), args.out and Path(args.out))


def _cmd_collect(args: argparse.Namespace) -> None:
    from ems_ray.collect import run_collect_stage
    from ems_ray.config import load_run_config

    cfg = load_run_config(args.config)
    summary = run_collect_stage(cfg, args.kind, points=args.points,
                                supernet_path=args.supernet and Path(args.supernet), use_ray=not args.local)
    print(f"[collect {summary.kind}] {summary.total_points}/{summary.target_points} points in {summary.folder} "
          f"({summary.new_points} new in {summary.seconds / 60:.1f} min, {summary.points_per_min:.1f} points/min)")


def _cmd_train_predictor(args: argparse.Namespace) -> None:
    from ems_ray.config import load_run_config
    from ems_ray.predictor import run_predictor_stage

    overrides = _overrides(args, mode="predictor.mode", num_samples="predictor.tune.num_samples",
                           data="predictor.data_dir")
    run_predictor_stage(load_run_config(args.config, overrides), force=args.force)


def _cmd_search(args: argparse.Namespace) -> None:
    from ems_ray.config import load_run_config
    from ems_ray.search import format_cost, run_search_stage

    overrides = _overrides(args, algorithm="search.algorithm", mode="search.mode",
                           generations="search.evolution.generations", num_samples="search.num_samples")
    cfg = load_run_config(args.config, overrides)
    result, out = run_search_stage(cfg, args.budget)
    s = result.scores
    print(f"[search {result.algorithm}] budget {result.budget.describe()}: {result.scored} candidates scored "
          f"in {result.seconds:.2f} s")
    print(f"  predicted accuracy {s['accuracy']:.4f}, latency {format_cost('latency_ms', s['latency_ms'])}, "
          f"energy {format_cost('energy_mj', s['energy_mj'])}, {format_cost('bitops', s['bitops'])} BitOps, "
          f"{format_cost('macs', s['macs'])}")
    from ems_ray.space import Genome

    genome = Genome(cfg.search_space())
    subnet, active = result.subnet(genome), genome.active(result.genes)[0]
    print(f"  best sub-net: depths {subnet.depths}; active blocks (kernel, mid channels, pw W/A bits, dw W/A bits):")
    for i, block in enumerate(subnet.blocks):
        if active[i]:
            print(f"    block {i:2d}: k{block.kernel} mid {block.mid_channels:4d}  pw W{block.pw_w_bits}A{block.pw_a_bits}"
                  f"  dw W{block.dw_w_bits}A{block.dw_a_bits}")
    print(f"  saved {out / 'best.yaml'} and {out / 'result.json'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ems-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    space = sub.add_parser("space", help="inspect search spaces").add_subparsers(dest="action", required=True)
    show = space.add_parser("show", help="print a preset's block slots and encoding size")
    show.add_argument("--preset", default="fmnist-small", help=f"one of {preset_names()} or a YAML path")
    show.set_defaults(func=_cmd_space_show)

    lut = sub.add_parser("lut", help="BitFusion latency/energy lookup tables").add_subparsers(dest="action", required=True)
    build = lut.add_parser("build", help="evaluate the hardware model for every layer a space can produce")
    build.add_argument("--preset", default="fmnist-small", help=f"one of {preset_names()} or a YAML path")
    build.add_argument("--out", default="runs/lut", help="output folder (default: runs/lut)")
    build.set_defaults(func=_cmd_lut_build)

    train = sub.add_parser("train-supernet", help="progressive-shrinking training on Ray Train")
    train.add_argument("--config", required=True, help="run config YAML (e.g. configs/fmnist-quick.yaml)")
    train.add_argument("--workers", type=int, help="override supernet.workers")
    train.add_argument("--local", action="store_true", help="run in this process, without Ray")
    train.set_defaults(func=_cmd_train_supernet)

    export = sub.add_parser("export", help="quantize, fine-tune and export a sub-net (ONNX QDQ + JSON)")
    export.add_argument("--config", required=True, help="run config YAML (data, quantization recipe)")
    export.add_argument("--subnet", required=True, help="sub-net config YAML (e.g. from `ems-ray search`)")
    export.add_argument("--supernet", help="super-network file (default: <run_dir>/supernet/supernet.pt)")
    export.add_argument("--out", help="output folder (default: <run_dir>/export/<subnet name>)")
    export.set_defaults(func=_cmd_export)

    collect = sub.add_parser("collect", help="measure sampled sub-nets into Parquet (FP or quantized)")
    collect.add_argument("kind", choices=["fp", "quant"], help="full-precision or quantized points")
    collect.add_argument("--config", required=True, help="run config YAML (its `collect` section)")
    collect.add_argument("--points", type=int, help="target number of points (default: collect.<kind>_points)")
    collect.add_argument("--supernet", help="super-network file (default: <run_dir>/supernet/supernet.pt)")
    collect.add_argument("--local", action="store_true", help="run in this process, without Ray")
    collect.set_defaults(func=_cmd_collect)

    pred = sub.add_parser("train-predictor", help="FP and quantization-aware accuracy predictors (transfer)")
    pred.add_argument("--config", required=True, help="run config YAML (its `predictor` section)")
    pred.add_argument("--mode", choices=["single", "tune"], help="override predictor.mode: one run or a Ray Tune search")
    pred.add_argument("--num-samples", type=int, help="override predictor.tune.num_samples")
    pred.add_argument("--data", help="collected Parquet folder with fp/ and quant/ (default: <run_dir>/collect)")
    pred.add_argument("--force", action="store_true", help="retrain even if the run's predictors are up to date")
    pred.set_defaults(func=_cmd_train_predictor)

    search = sub.add_parser("search", help="best sub-net under a latency/energy/BitOps budget (predictor + LUT)")
    search.add_argument("--config", required=True, help="run config YAML (its `search` section)")
    search.add_argument("--budget", help="e.g. latency=8.5ms, energy=12mJ, bitops=20G, or several joined by "
                                         "commas (default: search.budget)")
    search.add_argument("--algorithm", choices=["evolution", "tpe", "nsga2"], help="override search.algorithm")
    search.add_argument("--mode", choices=["local", "tune"],
                        help="override search.mode (local: evolution in-process; Optuna always runs on Tune)")
    search.add_argument("--generations", type=int, help="override search.evolution.generations")
    search.add_argument("--num-samples", type=int, help="override search.num_samples (Optuna searchers)")
    search.set_defaults(func=_cmd_search)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # configuration and data problems: one clear message, no traceback
        print(f"ems-ray: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

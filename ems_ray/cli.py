"""The `ems-ray` command: one sub-command per pipeline stage, each a thin call into its stage.

Each command loads the run config and passes its stage the run's shared settings
(`cfg.context()`) and the sections the stage takes. Stage modules are imported inside the
commands, so `ems-ray --help` loads neither torch, Ray nor numpy."""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from ems_ray.console import configure_logging
from ems_ray.errors import InputError, validation_problems
from ems_ray.pipeline.stages import STAGE_NAMES
from ems_ray.search.config import BUDGET_RULE
from ems_ray.space import preset_names, resolve_space


def _overrides(args: argparse.Namespace, **config_keys: str) -> dict[str, tuple]:
    """Config overrides (dotted key -> value, option as given) from the command-line options that
    were given (a given 0 or empty value is an override too, never "use the config's value")."""
    return {key: (getattr(args, option), f"--{option.replace('_', '-')} {getattr(args, option)}")
            for option, key in config_keys.items() if getattr(args, option) is not None}


def positive_int(text: str) -> int:
    """argparse type of count options: a whole number >= 1, so `--points 0` is an error, not the default."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number (1 or more), got {value}")
    return value


def _set_pairs(items: list[str] | None) -> dict[str, tuple]:
    """`--set key=value` options as dotted overrides (key -> value, option as given); values are
    read as YAML (`2`, `true`, `[a]`), and one that is not YAML is blamed on its option."""
    from ems_ray.space.yaml_model import read_yaml_text

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set: expected key=value (e.g. run_dir=/mnt/runs/x), got '{item}'")
        out[key.strip()] = (read_yaml_text(value, f"--set {item}"), f"--set {item}")
    return out


def config_from_args(args: argparse.Namespace, **config_keys: str):
    """The run config of `--config`, with `--set` pairs and the given options applied on top."""
    from ems_ray.config import load_run_config

    given = {**_set_pairs(args.set), **_overrides(args, **config_keys)}
    return load_run_config(args.config, {key: value for key, (value, _) in given.items()},
                           origins={key: origin for key, (_, origin) in given.items()})


def _add_config(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--config", required=True, help=f"run config YAML ({what})")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, dotted keys allowed (e.g. --set run_dir=/mnt/runs/x); repeatable")


def _cmd_space_show(args: argparse.Namespace) -> None:
    from ems_ray.space import Encoding

    space = resolve_space(args.preset)
    enc = Encoding(space)
    print(f"search space '{space.name}': input {space.image_channels}x{space.input_resolution}^2, "
          f"{len(space.slots)} block slots, encoding {enc.version}: {enc.fp_dim} FP + {enc.quant_dim} quant "
          f"= {enc.dim} features")
    for s in space.slots:
        print(f"  slot {s.index:2d} stage {s.stage} pos {s.position}: {s.in_channels:4d}->{s.out_channels:4d} "
              f"stride {s.stride} {s.in_resolution}->{s.out_resolution}px mid {s.mid_choices[0]}..{s.mid_choices[-1]} "
              f"({len(s.mid_choices)} choices)")


def _lut_target(args: argparse.Namespace):
    """(space, target, table path, run config or None) of a `lut` command: the run config's space,
    hardware and `<run_dir>/lut.parquet` when --config is given, else --preset, --target, --out;
    the target options given on the command line override the config's."""
    from ems_ray.hardware.targets import parse_target
    from ems_ray.run_layout import RunLayout

    cfg = None
    if args.config:
        cfg = config_from_args(args)
        space, target = cfg.search_space(), cfg.hardware
        if args.target and args.target != target.kind:
            target = parse_target(args.target)
    else:
        space, target = resolve_space(args.preset), parse_target(args.target or "bitfusion")
    options = {k: getattr(args, k) for k in ("threads", "batch", "repeats", "provider") if getattr(args, k, None)}
    if options:
        if not target.measured:
            raise InputError(f"--{'/--'.join(options)}: options of a measured target (--target onnxruntime-cpu)")
        target = parse_target({**target.model_dump(), **options})
    if cfg is not None and not args.out:
        path = Path(cfg.search.lut) if cfg.search.lut else RunLayout.of(cfg).lut
    else:
        suffix = "" if target.kind == "bitfusion" else f"-{target.kind}"
        path = Path(args.out or "runs/lut") / f"lut-{space.name}{suffix}.parquet"
    return space, target, path, cfg


def _cmd_lut_build(args: argparse.Namespace) -> None:
    from ems_ray.hardware import build_lut, build_measured_lut

    space, target, out, cfg = _lut_target(args)
    t0 = time.perf_counter()
    if target.measured:
        runner = None
        if cfg is not None and target.resources and not args.local:
            from ems_ray.hardware._ray_build import ray_runner

            runner = ray_runner(cfg.context(), target)
        table = build_measured_lut(space, target, out, runner=runner)
    else:
        table = build_lut(space, target.config, progress=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        table.save(out)
    print(f"built {out} in {time.perf_counter() - t0:.1f} s")
    print(table.summary())


def _cmd_lut_validate(args: argparse.Namespace) -> None:
    from ems_ray.hardware import CostTable
    from ems_ray.hardware.validate import validate_table, write_report

    space, target, path, cfg = _lut_target(args)
    if not target.measured:
        raise InputError("--target: only a measured table can be validated (e.g. --target onnxruntime-cpu)")
    path = Path(args.table) if args.table else path
    table = CostTable.load(path, space, target=target, force=args.force)
    runner = None
    if cfg is not None and target.resources and not args.local:
        from ems_ray.hardware._ray_build import ray_runner

        runner = ray_runner(cfg.context(), target)
    t0 = time.perf_counter()
    report = validate_table(table, args.samples, seed=args.seed, runner=runner)
    out = Path(args.report_dir) if args.report_dir else path.parent / f"{path.stem}-validation"
    host = table.host or {}
    written = write_report(report, out, f"{space.name}: onnxruntime {host.get('onnxruntime')}, "
                                        f"{host.get('threads')} thread(s), batch {host.get('batch')}")
    print(f"validated {path} in {time.perf_counter() - t0:.1f} s; wrote {', '.join(str(p) for p in written)}")
    print(report.summary())


def _cmd_train_supernet(args: argparse.Namespace) -> None:
    from ems_ray.train import run_supernet_stage

    cfg = config_from_args(args, workers="supernet.workers")
    run_supernet_stage(cfg.context(), cfg.supernet, use_ray=not args.local)


def _cmd_export(args: argparse.Namespace) -> None:
    from ems_ray.quant.stage import export_subnet

    cfg = config_from_args(args)
    export_subnet(cfg.context(), cfg.quant, Path(args.subnet), args.supernet and Path(args.supernet),
                  args.out and Path(args.out), force=args.force)


def _cmd_collect(args: argparse.Namespace) -> None:
    from ems_ray.collect import run_collect_stage

    cfg = config_from_args(args)
    summary = run_collect_stage(cfg.context(), cfg.collect, args.kind, quant=cfg.quant, points=args.points,
                                supernet_path=args.supernet and Path(args.supernet), use_ray=not args.local)
    print(f"[collect {summary.kind}] {summary.total_points}/{summary.target_points} points in {summary.folder} "
          f"({summary.new_points} new in {summary.seconds / 60:.1f} min, {summary.points_per_min:.1f} points/min)")


def _cmd_train_predictor(args: argparse.Namespace) -> None:
    from ems_ray.predictor import run_predictor_stage

    cfg = config_from_args(args, mode="predictor.mode", num_samples="predictor.tune.num_samples", data="predictor.data_dir")
    run_predictor_stage(cfg.context(), cfg.predictor, force=args.force)


def _cmd_search(args: argparse.Namespace) -> None:
    from ems_ray.search import format_cost, run_search_stage

    if args.pareto is not None:
        return _search_pareto(args)
    cfg = config_from_args(args, algorithm="search.algorithm", mode="search.mode",
                  generations="search.evolution.generations", num_samples="search.num_samples")
    result, out = run_search_stage(cfg.context(), cfg.search, args.budget)
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


def _search_pareto(args: argparse.Namespace) -> None:
    import numpy as np

    from ems_ray.search import Objectives, format_cost, run_pareto_stage

    objectives = Objectives.parse(args.pareto)  # named error before the config and predictors load
    cfg = config_from_args(args, algorithm="search.algorithm", mode="search.mode",
                           generations="search.pareto.evolution.generations", num_samples="search.num_samples")
    result, out = run_pareto_stage(cfg.context(), cfg.search, objectives, args.budget)
    limits = "" if result.budget is None else f" within {result.budget.describe()}"
    ref = ", ".join(f"{k} {format_cost(k, v)}" for k, v in result.reference.items())
    print(f"[search {result.algorithm} --pareto {objectives.describe()}]{limits}: {len(result)} points on the front, "
          f"{result.scored} candidates scored in {result.seconds:.2f} s")
    print(f"  hypervolume {result.hypervolume:.6g} ({result.hypervolume_normalized:.4f} of the box up to the "
          f"reference point: {ref})")
    shown = np.unique(np.linspace(0, len(result) - 1, min(len(result), 8)).round().astype(int)) if len(result) else []
    print(f"  points (by {objectives.costs[0]}):" + ("" if len(result) else " none"))
    for i in shown:
        s = {k: v[i] for k, v in result.scores.items()}
        print(f"    {i:4d}: accuracy {s['accuracy']:.4f}  latency {format_cost('latency_ms', s['latency_ms'])}  "
              f"energy {format_cost('energy_mj', s['energy_mj'])}  {format_cost('bitops', s['bitops'])} BitOps")
    print(f"  saved {out}/{{front.parquet,front.csv,result.json,front.png}}")


def _cmd_pipeline(args: argparse.Namespace) -> None:
    from ems_ray.pipeline import print_outcome, run_pipeline

    cfg = config_from_args(args)
    manifest = run_pipeline(cfg, only=args.only, force=args.force, use_ray=not args.local)
    print_outcome(cfg, manifest)


def _cmd_compare_searchers(args: argparse.Namespace) -> None:
    from ems_ray.search.compare import format_summary, how_to_view, run_compare_stage

    cfg = config_from_args(args, candidates="search.compare.candidates")
    out = run_compare_stage(cfg.context(), cfg.search, args.budget)
    print(format_summary(out / "summary.csv"))
    print(f"  wrote {out}/{{summary,curves,front}}.csv, curves.png, front.png")
    print(how_to_view(out))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ems-ray", description=__doc__,
        epilog="-v/-q and --debug may stand anywhere on the line; EMS_RAY_DEBUG=1 is the same as --debug")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more detail: debug lines with times and module names")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", required=True)

    space = sub.add_parser("space", help="inspect search spaces").add_subparsers(dest="action", required=True)
    show = space.add_parser("show", help="print a preset's block slots and encoding size")
    show.add_argument("--preset", default="fmnist-small", help=f"one of {preset_names()} or a YAML path")
    show.set_defaults(func=_cmd_space_show)

    lut = sub.add_parser("lut", help="latency lookup tables: the BitFusion model, or measured in ONNX Runtime"
                         ).add_subparsers(dest="action", required=True)
    build = lut.add_parser("build", help="price (bitfusion) or time (onnxruntime-cpu) every layer a space can produce")
    validate = lut.add_parser("validate", help="time whole random sub-nets and compare them with a measured table")
    for p in (build, validate):
        p.add_argument("--target", choices=["bitfusion", "onnxruntime-cpu"],
                       help="hardware target (default: the config's `hardware`, else bitfusion)")
        p.add_argument("--config", help="run config: its space, `hardware` section and <run_dir>/lut.parquet")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
        p.add_argument("--preset", default="fmnist-small", help=f"without --config: one of {preset_names()} or a YAML path")
        p.add_argument("--out", help="output folder (default: the run's folder with --config, else runs/lut)")
        p.add_argument("--threads", type=positive_int, help="measured targets: intra-op threads")
        p.add_argument("--batch", type=positive_int, help="measured targets: images per run")
        p.add_argument("--repeats", type=positive_int, help="measured targets: timed runs per model")
        p.add_argument("--provider", choices=["cpu", "cuda", "tensorrt"], help="measured targets: execution provider")
        p.add_argument("--local", action="store_true", help="measure in this process even if hardware.resources name Ray nodes")
    build.set_defaults(func=_cmd_lut_build)
    validate.add_argument("--samples", type=positive_int, default=100, help="random sub-nets to time (default 100)")
    validate.add_argument("--seed", type=int, default=1, help="draws the sub-nets (calibration ones are excluded)")
    validate.add_argument("--table", help="the table to validate (default: where `lut build` writes it)")
    validate.add_argument("--report-dir", help="where validation.json/png go (default: beside the table)")
    validate.add_argument("--force", action="store_true", help="use a table measured on another host or onnxruntime")
    validate.set_defaults(func=_cmd_lut_validate)

    train = sub.add_parser("train-supernet", help="progressive-shrinking training on Ray Train")
    _add_config(train, "e.g. configs/fmnist-quick.yaml")
    train.add_argument("--workers", type=positive_int, help="override supernet.workers")
    train.add_argument("--local", action="store_true", help="run in this process, without Ray")
    train.set_defaults(func=_cmd_train_supernet)

    export = sub.add_parser("export", help="quantize, fine-tune and export a sub-net (ONNX that ONNX Runtime runs with integer kernels + JSON)")
    _add_config(export, "data, quantization recipe")
    export.add_argument("--subnet", required=True, help="sub-net config YAML (e.g. from `ems-ray search`)")
    export.add_argument("--supernet", help="super-network file (default: <run_dir>/supernet/supernet.pt)")
    export.add_argument("--out", help="output folder (default: <run_dir>/export/<subnet file stem>-<subnet digest>, "
                                      "one per sub-net)")
    export.add_argument("--force", action="store_true",
                        help="replace an export of another sub-net in the output folder (refused otherwise)")
    export.set_defaults(func=_cmd_export)

    collect = sub.add_parser("collect", help="measure sampled sub-nets into Parquet (FP or quantized)")
    collect.add_argument("kind", choices=["fp", "quant"], help="full-precision or quantized points")
    _add_config(collect, "its `collect` section")
    collect.add_argument("--points", type=positive_int, help="target number of points (default: collect.<kind>_points)")
    collect.add_argument("--supernet", help="super-network file (default: <run_dir>/supernet/supernet.pt)")
    collect.add_argument("--local", action="store_true", help="run in this process, without Ray")
    collect.set_defaults(func=_cmd_collect)

    pred = sub.add_parser("train-predictor", help="FP and quantization-aware accuracy predictors (transfer)")
    _add_config(pred, "its `predictor` section")
    pred.add_argument("--mode", choices=["single", "tune"], help="override predictor.mode: one run or a Ray Tune search")
    pred.add_argument("--num-samples", type=positive_int, help="override predictor.tune.num_samples")
    pred.add_argument("--data", help="collected Parquet folder with fp/ and quant/ (default: <run_dir>/collect)")
    pred.add_argument("--force", action="store_true", help="retrain even if the run's predictors are up to date")
    pred.set_defaults(func=_cmd_train_predictor)

    search = sub.add_parser("search", help="best sub-net under a latency/energy/BitOps budget (predictor + LUT)")
    _add_config(search, "its `search` section")
    search.add_argument("--budget", help=f"e.g. latency=8.5ms, energy=12mJ, bitops=20G, or several joined by "
                                         f"commas; each limit is {BUDGET_RULE} (default: search.budget)")
    search.add_argument("--algorithm", choices=["evolution", "tpe", "nsga2", "random"],
                        help="override search.algorithm")
    search.add_argument("--mode", choices=["local", "tune"],
                        help="override search.mode (local: evolution in-process; Optuna always runs on Tune)")
    search.add_argument("--generations", type=positive_int, help="override search.evolution.generations")
    search.add_argument("--num-samples", type=positive_int, help="override search.num_samples (Optuna searchers)")
    search.add_argument("--pareto", metavar="OBJECTIVES",
                        help="the Pareto front instead of one budget: two or three of accuracy, latency_ms, "
                             "energy_mj, bitops, accuracy among them (e.g. accuracy,latency_ms,energy_mj); "
                             "--budget then sets hard limits; --algorithm evolution or nsga2; "
                             "--generations overrides search.pareto.evolution.generations")
    search.set_defaults(func=_cmd_search)

    compare = sub.add_parser("compare-searchers", help="evolution vs TPE vs NSGA-II vs random at equal scored "
                                                       "candidates, on Ray Tune (table, curves, fronts)")
    _add_config(compare, "its `search` and `search.compare`")
    compare.add_argument("--budget", help=f"e.g. latency=8.5ms; as for `search` ({BUDGET_RULE}) "
                                          "(default: search.budget)")
    compare.add_argument("--candidates", type=positive_int, help="override search.compare.candidates (scored per algorithm)")
    compare.set_defaults(func=_cmd_compare_searchers)

    pipe = sub.add_parser("pipeline", help="every stage of a run, resumable, ending with a report")
    _add_config(pipe, "e.g. configs/fmnist-quick.yaml")
    pipe.add_argument("--only", nargs="+", metavar="STAGE", help=f"run only these stages, of {list(STAGE_NAMES)}")
    pipe.add_argument("--force", action="store_true", help="re-run the selected stages even when current")
    pipe.add_argument("--local", action="store_true", help="run stages in this process where they can (no Ray)")
    pipe.set_defaults(func=_cmd_pipeline)
    return parser


_GLOBAL_FLAGS = {"--debug": (0, True), "-v": (1, False), "--verbose": (1, False), "-vv": (2, False),
                 "-q": (-1, False), "--quiet": (-1, False)}


def _global_flags(argv: list[str]) -> tuple[list[str], int, bool]:
    """(argv without them, verbosity, debug): the flags that may stand anywhere on the line."""
    verbosity, debug, rest = 0, os.environ.get("EMS_RAY_DEBUG", "").lower() in ("1", "true", "yes"), []
    for arg in argv:
        if arg in _GLOBAL_FLAGS:
            step, is_debug = _GLOBAL_FLAGS[arg]
            verbosity, debug = verbosity + step, debug or is_debug
        else:
            rest.append(arg)
    return rest, verbosity, debug


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit 0 when done, 2 for bad input (one named line), 130 when interrupted,
    1 for anything unexpected: a bug, reported as an internal error with its traceback behind
    `--debug` (or EMS_RAY_DEBUG=1)."""
    from pydantic import ValidationError

    argv, verbosity, debug = _global_flags(list(sys.argv[1:] if argv is None else argv))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage error (2) or the help (0)
        return int(exc.code or 0)
    configure_logging(verbosity)
    try:
        args.func(args)
    except KeyboardInterrupt:
        # finished work is on disk (checkpoints, shards, results, the manifest): say how to go on
        print(f"ems-ray: {args.command} interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (InputError, FileNotFoundError) as exc:
        # configuration, option and data problems: one clear message, no traceback
        print(f"ems-ray: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # a model built from input outside a config file: its fields, one line
        print(f"ems-ray: error: invalid {exc.title}: {'; '.join(validation_problems(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug, not the user's input
        if debug:
            traceback.print_exc()
        print(f"ems-ray: internal error in '{args.command}': {exc.__class__.__name__}: {exc}"
              + ("" if debug else " (run with --debug or EMS_RAY_DEBUG=1 for the traceback)"),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

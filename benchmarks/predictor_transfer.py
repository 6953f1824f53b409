"""Predictor transfer (the paper's figure 6) on our data: pairwise accuracy against quantized data size.

    .venv/bin/python benchmarks/predictor_transfer.py --run-dir runs/fmnist-full      # collected Parquet
    .venv/bin/python benchmarks/predictor_transfer.py --synthetic                     # no data needed

Quantized rows are split by architecture into a fixed test set and a pool. For every seed the FP
predictor is trained once on all FP rows; then, for each size N, N rows are drawn from the pool
and a quantization-aware predictor is trained twice on them with the same settings and early
stopping: initialised from the FP predictor (transfer) and at random (scratch). Both are scored
on the test set. `fp-only` scores the FP predictor's architecture-only ranking on the same test
set (what transfer starts from). Writes `<out>/predictor_transfer.csv` and `.png`, prints a table,
then times batched inference (50k candidates). One torch thread by default, to share the machine.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from ems_ray.predictor import (
    CollectedData, MLPPredictor, PredictorConfig, load_collected, pairwise_accuracy, ranking_metrics,
    samples_from_table, split_by_group, synthetic_accuracy, synthetic_collection, train_predictors,
)
from ems_ray.space import Encoding, Genome, resolve_space

METHODS = ("transfer", "scratch")


def _data(args: argparse.Namespace, space) -> tuple[CollectedData, str]:
    if args.synthetic:
        fp, quant = synthetic_collection(space, args.n_fp, args.n_quant, seed=args.data_seed, noise=args.noise)
        return (CollectedData(samples_from_table(fp, space, "fp"), samples_from_table(quant, space, "quant")),
                f"synthetic ({args.n_fp} FP + {args.n_quant} quantized rows, noise {args.noise})")
    collect = Path(args.collect or Path(args.run_dir) / "collect")
    data = load_collected(collect, space)
    for note in data.notes:
        print(f"note: {note}")
    return data, str(collect)


def run(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    space = resolve_space(args.space)
    data, source = _data(args, space)
    if len(data.quant) < 20:
        raise SystemExit(f"{source}: {len(data.quant)} quantized rows; the experiment needs quantized data")
    pool_idx, test_idx = split_by_group(data.quant.arch_id, args.test_fraction, seed=12345)
    pool, test = data.quant.subset(pool_idx), data.quant.subset(test_idx)
    sizes = [n for n in args.sizes if n <= len(pool)]
    print(f"data: {source}; space {space.name}; quantized test set {len(test)} rows, pool {len(pool)}; "
          f"sizes {sizes}; seeds {args.seeds}")
    if args.synthetic:  # the best any predictor can do against noisy measurements
        ceiling = pairwise_accuracy(test.accuracy, synthetic_accuracy(space, test.genes)[1])
        print(f"noise ceiling: the noise-free ground truth scores {ceiling:.3f} pairwise on the test set")
    config = PredictorConfig()
    encoding = Encoding(space)
    rows, curves = [], {}
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        fp = train_predictors(CollectedData(data.fp, data.quant.subset(np.zeros(0, int))), config, space, seed)
        fp_metrics = fp.fp.metadata["metrics"]
        test_fp = ranking_metrics(test.accuracy, fp.fp.predict(test.genes))
        print(f"seed {seed}: FP predictor held-out pairwise {fp_metrics['val_pairwise_accuracy']:.3f} "
              f"({fp_metrics['train_rows']} rows, {time.perf_counter() - t0:.1f} s); on quantized test "
              f"{test_fp['pairwise_accuracy']:.3f}")
        rng = np.random.default_rng(1000 + seed)
        order = rng.permutation(len(pool))
        for n in sizes:
            subset = CollectedData(data.fp, pool.subset(order[:n]))
            rows.append({"seed": seed, "size": n, "method": "fp-only", **{f"test_{k}": v for k, v in test_fp.items()},
                         "epochs": 0, "seconds": 0.0})
            for method in METHODS:
                t0 = time.perf_counter()
                cfg = config.model_copy(update={"transfer": method == "transfer"})
                curve = seed == 0 and n == args.curve_size
                trained = train_predictors(subset, cfg, space, seed, fp_model=fp.fp.model,
                                           on_epoch=_test_curve(curves.setdefault(method, []), test, cfg, encoding) if curve else None)
                m = ranking_metrics(test.accuracy, trained.quant.predict(test.genes))
                rows.append({"seed": seed, "size": n, "method": method, **{f"test_{k}": v for k, v in m.items()},
                             "epochs": trained.quant.metadata["metrics"]["epochs"],
                             "seconds": round(time.perf_counter() - t0, 2)})
            print(f"  N={n:5d}: " + ", ".join(f"{r['method']} {r['test_pairwise_accuracy']:.3f}" for r in rows[-3:]),
                  flush=True)
    _write(rows, curves, args, source)
    _inference_speed(trained.quant, space, args.threads)
    return rows


def _inference_speed(predictor, space, threads: int, n: int = 50_000) -> None:
    """Time `predict` on n random candidates (what one search run scores), float32 and bfloat16."""
    genes = Genome(space).sample(np.random.default_rng(0), n)
    reference = predictor.predict(genes)
    for dtype in (torch.float32, torch.bfloat16):
        predictor.to(dtype=dtype)
        predictor.predict(genes[:1000])
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            pred = predictor.predict(genes)
            times.append(time.perf_counter() - t0)
        t100 = time.perf_counter()
        for i in range(20):
            predictor.predict(genes[i * 100:(i + 1) * 100])
        t100 = (time.perf_counter() - t100) / 20
        print(f"predict, {threads} thread(s), {str(dtype).removeprefix('torch.')}: {n} candidates in "
              f"{min(times) * 1e3:.0f} ms ({min(times) / n * 1e6:.1f} us each); 100 in {t100 * 1e3:.2f} ms; "
              f"max |diff| vs float32 {np.abs(pred - reference).max():.1e}")
    predictor.to(dtype=torch.float32)


def _test_curve(out: list, test, config: PredictorConfig, encoding: Encoding):
    """An `on_epoch` callback appending each epoch's test-set pairwise accuracy to `out`."""
    x = torch.from_numpy(encoding.encode(test.genes))
    model = MLPPredictor(encoding.fp_dim, encoding.quant_dim, config.hidden, config.layers, config.activation)

    def on_epoch(record: dict, snapshot) -> None:
        model.load_state_dict(snapshot()["fit"]["model"])
        with torch.inference_mode():
            out.append(pairwise_accuracy(test.accuracy, model.eval()(x).numpy()))
    return on_epoch


def summarise(rows: list[dict]) -> list[tuple]:
    out = []
    for n in sorted({r["size"] for r in rows}):
        cells = [n]
        for method in ("fp-only", *METHODS):
            vals = np.asarray([r["test_pairwise_accuracy"] for r in rows if r["size"] == n and r["method"] == method])
            cells.append(f"{vals.mean():.3f} ± {vals.std():.3f}")
        taus = {m: np.mean([r["test_kendall_tau"] for r in rows if r["size"] == n and r["method"] == m]) for m in METHODS}
        cells += [f"{taus['transfer']:.3f}", f"{taus['scratch']:.3f}"]
        out.append(tuple(cells))
    return out


def _write(rows: list[dict], curves: dict, args: argparse.Namespace, source: str) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictor_transfer.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = ("quant rows", "fp-only pairwise", "transfer pairwise", "scratch pairwise", "transfer tau", "scratch tau")
    table = summarise(rows)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table)]
    print(f"\npairwise accuracy on the quantized test set (mean ± std over {args.seeds} seeds); {source}")
    for i, row in enumerate([header, *table]):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if curves:
        for method, curve in curves.items():
            axes[0].plot(np.arange(1, len(curve) + 1), curve, label=f"{'w/' if method == 'transfer' else 'w/o'} transfer")
        fp_only = [r["test_pairwise_accuracy"] for r in rows if r["method"] == "fp-only" and r["seed"] == 0][0]
        axes[0].axhline(fp_only, color="tab:green", linestyle="--", label="FP predictor only")
        axes[0].set(xlabel="epoch (until early stopping)", ylabel="test pairwise accuracy",
                    title=f"quantization-aware predictor, {args.curve_size} rows (seed 0)")
        axes[0].legend()
    sizes = sorted({r["size"] for r in rows})
    for method, label in (("transfer", "w/ transfer"), ("scratch", "w/o transfer"), ("fp-only", "FP predictor only")):
        stats = np.asarray([[np.mean(v), np.std(v)] for v in (
            [r["test_pairwise_accuracy"] for r in rows if r["size"] == n and r["method"] == method] for n in sizes)])
        style = {"linestyle": "--"} if method == "fp-only" else {"marker": "o"}
        axes[1].plot(sizes, stats[:, 0], label=label, **style)
        axes[1].fill_between(sizes, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1], alpha=0.2)
    axes[1].set_xscale("log")
    axes[1].set_xticks(sizes, [str(n) for n in sizes])
    axes[1].minorticks_off()
    axes[1].set(xlabel="quantized training rows", ylabel="test pairwise accuracy", title="pairwise accuracy vs data size")
    axes[1].legend()
    fig.suptitle(f"predictor transfer: {source}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "predictor_transfer.png", dpi=120)
    print(f"\nwrote {out / 'predictor_transfer.csv'} and {out / 'predictor_transfer.png'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run-dir", help="run folder with collect/fp and collect/quant")
    src.add_argument("--collect", help="collection folder with fp/ and quant/")
    src.add_argument("--synthetic", action="store_true", help="synthetic data (ems_ray.predictor.synthetic_collection)")
    parser.add_argument("--space", default="fmnist-small", help="preset name or YAML path")
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200, 400, 800])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--curve-size", type=int, default=100, help="size whose epoch curves are plotted")
    parser.add_argument("--n-fp", type=int, default=2000, help="synthetic FP rows")
    parser.add_argument("--n-quant", type=int, default=1600, help="synthetic quantized rows")
    parser.add_argument("--noise", type=float, default=0.004, help="synthetic measurement noise (accuracy sd)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/predictor_transfer")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()

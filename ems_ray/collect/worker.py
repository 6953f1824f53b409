"""The evaluation worker: measures batches of planned points; pure PyTorch, no Ray.

A worker loads the super network and builds its data loaders once, then turns each batch of
planned samples (with their hardware costs) into result rows in `COLLECT_SCHEMA`. The Ray layer
wraps one worker per actor; tests and `--local` runs use it directly.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Subset

from ems_ray.data import DataConfig, build_splits, make_loader
from ems_ray.quant.recipe import QuantRecipe, quantize_subnet
from ems_ray.space import ENCODING_VERSION, Genome, SearchSpace
from ems_ray.supernet import ElasticSuperNet, evaluate, recalibrate_bn


HARDWARE_COLUMNS = ("latency_ms", "energy_mj", "bitops", "macs")


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs besides the super network's weights (small; pickled to actors)."""

    kind: str
    space: SearchSpace
    data: DataConfig
    bn_batches: int
    val_images: int | None
    recipe: QuantRecipe
    supernet_sha256: str
    threads: int = 1
    device: str = "auto"

    def measurement(self) -> dict:
        """The settings that decide a point's accuracy (recorded beside the shards)."""
        out = {"data": self.data.model_dump(mode="json", exclude={"num_workers"}), "val_images": self.val_images}
        if self.kind == "fp":
            out["bn_batches"] = self.bn_batches
        else:
            out["recipe"] = self.recipe.model_dump(mode="json")
        return out


def choose_device(preference: str, gpu_ids: list) -> tuple[str, str | None]:
    """(device, note): CUDA when asked for or assigned and available; otherwise CPU, with a note
    saying why when a GPU was expected."""
    if preference == "cpu":
        return "cpu", None
    wants_gpu = preference == "cuda" or bool(gpu_ids)
    if not wants_gpu:
        return "cpu", None
    if torch.cuda.is_available():
        return "cuda", None
    given = f"Ray assigned GPU {list(gpu_ids)}" if gpu_ids else "device 'cuda' was requested"
    return "cpu", f"{given} but no CUDA device is usable here (torch.cuda.is_available() is False): running on CPU"


class EvaluationWorker:
    """Measures planned points on one device with one copy of the super network."""

    def __init__(self, spec: WorkerSpec, state_dict: dict, device: str = "cpu", node: str | None = None,
                 worker: str | None = None):
        torch.set_num_threads(spec.threads)
        self.spec, self.device = spec, torch.device(device)
        self.node = node or socket.gethostname()
        self.worker = worker or f"pid{os.getpid()}"
        self.genome = Genome(spec.space)
        net = ElasticSuperNet(spec.space)
        net.load_state_dict(state_dict)
        self.supernet = net.to(self.device).eval()
        splits = build_splits(spec.data)
        val = splits.val
        if spec.val_images is not None and spec.val_images < len(val):
            val = Subset(val, range(spec.val_images))
        pin = self.device.type == "cuda"
        self.train_loader = make_loader(splits.train, spec.data.batch_size, shuffle=True, seed=0, pin_memory=pin)
        self.val_loader = make_loader(val, spec.data.eval_batch_size, pin_memory=pin)

    def measure(self, genes: np.ndarray, seed: int) -> tuple[float, float | None]:
        """(accuracy, fp_accuracy) of one gene row; fp_accuracy is None for FP points."""
        cfg = self.genome.to_config(genes)
        if self.spec.kind == "quant":
            result = quantize_subnet(self.supernet, cfg, self.spec.recipe, self.train_loader, self.val_loader,
                                     seed=int(seed))
            return result.quant_acc, result.fp_acc
        self.train_loader.generator.manual_seed(int(seed))  # which images recalibrate BN
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(int(seed))  # augmentation draws
            net = self.supernet.extract(cfg)
            recalibrate_bn(net, self.train_loader, self.spec.bn_batches)
            acc, _ = evaluate(net, self.val_loader)
        return acc, None

    def __call__(self, batch: dict) -> dict:
        """Result columns (see `COLLECT_SCHEMA`) for a batch of planned samples.

        `batch` holds sample_id, scheme, arch_id, genes (n × width), seed and the hardware columns.
        """
        n = len(batch["sample_id"])
        acc, fp_acc, wall = np.zeros(n), [None] * n, np.zeros(n)
        for i in range(n):
            t0 = time.perf_counter()
            acc[i], fp_acc[i] = self.measure(np.asarray(batch["genes"][i]), batch["seed"][i])
            wall[i] = time.perf_counter() - t0
        return {
            "sample_id": np.asarray(batch["sample_id"], dtype=np.int64), "kind": [self.spec.kind] * n,
            "scheme": np.asarray(batch["scheme"], dtype=np.int8), "arch_id": list(batch["arch_id"]),
            "genes": np.asarray(batch["genes"], dtype=np.int16), "encoding_version": [ENCODING_VERSION] * n,
            "accuracy": acc, "fp_accuracy": fp_acc,
            **{c: np.asarray(batch[c]) for c in HARDWARE_COLUMNS},
            "supernet_sha256": [self.spec.supernet_sha256] * n, "seed": np.asarray(batch["seed"], dtype=np.int64),
            "wall_seconds": wall, "device": [self.device.type] * n, "node": [self.node] * n,
            "worker": [self.worker] * n,
        }

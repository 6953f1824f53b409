"""One sub-net from float to measured mixed precision: extract, quantize, calibrate, fine-tune,
evaluate. Shared by `ems-ray export`, quantized data collection and the final-model stage so all
three measure a policy the same way.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from ems_ray.space import SubnetConfig, validate_subnet
from ems_ray.supernet import ElasticSuperNet, evaluate, recalibrate_bn

from ._calibration import calibrate
from ._finetune import evaluate_quantized, quantization_aware_finetune
from ._policy import QuantPolicy, apply_policy
from .config import QuantRecipe


@dataclass
class QuantizedResult:
    model: nn.Module
    policy: QuantPolicy
    fp_acc: float
    quant_acc: float
    finetune_seconds: float
    seconds: float


def quantize_subnet(supernet: ElasticSuperNet, cfg: SubnetConfig, recipe: QuantRecipe, train_loader,
                    val_loader, seed: int = 0) -> QuantizedResult:
    """Measure `cfg` (bits included) on `val_loader`: float accuracy and quantized accuracy.

    Deterministic in `seed`: the batch order of `train_loader` (when it has its own generator, as
    `make_loader` builds) and the augmentation draws are re-seeded here.
    """
    validate_subnet(supernet.space, cfg)
    generator = getattr(train_loader, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _measure(supernet, cfg, recipe, train_loader, val_loader, seed)


def _measure(supernet: ElasticSuperNet, cfg: SubnetConfig, recipe: QuantRecipe, train_loader, val_loader,
             seed: int) -> QuantizedResult:
    t0 = time.perf_counter()
    fp = supernet.extract(cfg)
    recalibrate_bn(fp, train_loader, recipe.bn_batches)
    fp_acc, _ = evaluate(fp, val_loader, recipe.val_batches)
    policy = QuantPolicy.from_subnet(cfg, supernet.space)
    qnet = apply_policy(copy.deepcopy(fp), policy, weight_method=recipe.calibration)
    calibrate(qnet, train_loader, recipe.calib_batches, method=recipe.calibration)
    ft = quantization_aware_finetune(qnet, train_loader, recipe.finetune_steps, recipe.finetune_lr,
                                     teacher=fp if recipe.distill else None, seed=seed)
    acc, _ = evaluate_quantized(qnet, train_loader, val_loader, recipe.bn_batches, recipe.val_batches)
    return QuantizedResult(qnet, policy, fp_acc, acc, ft.seconds, time.perf_counter() - t0)

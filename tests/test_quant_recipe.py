"""The shared quantize → calibrate → fine-tune → evaluate recipe and `ems-ray export`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ems_ray.cli import main
from ems_ray.data import DataConfig, build_splits, make_loader
from ems_ray.space import Genome, SubnetConfig, load_preset
from ems_ray.supernet import ElasticSuperNet
from ems_ray.supernet.checkpoint import save_supernet
from ems_ray.quant import QuantRecipe, quantize_subnet

SPACE = load_preset("fmnist-small")
DATA = DataConfig(batch_size=32, eval_batch_size=64, train_subset=128, val_subset=64, test_subset=64)
RECIPE = QuantRecipe(calib_batches=1, finetune_steps=2, bn_batches=1)


def test_recipe_measures_float_and_quantized_accuracy():
    torch.manual_seed(0)
    net = ElasticSuperNet(SPACE)
    genome = Genome(SPACE)
    cfg = genome.to_config(genome.sample(np.random.default_rng(0), 1)[0])
    splits = build_splits(DATA)
    train = make_loader(splits.train, DATA.batch_size, shuffle=True, seed=0)
    val = make_loader(splits.val, DATA.eval_batch_size)
    a = quantize_subnet(net, cfg, RECIPE, train, val, seed=1)
    b = quantize_subnet(net, cfg, RECIPE, train, val, seed=1)
    assert 0 <= a.fp_acc <= 1 and 0 <= a.quant_acc <= 1
    assert (a.fp_acc, a.quant_acc) == (b.fp_acc, b.quant_acc)  # reproducible by seed
    assert a.policy.blocks[0].pw_w_bits == cfg.blocks[0].pw_w_bits


def test_export_command_end_to_end(tmp_path, capsys):
    torch.manual_seed(0)
    run_dir = tmp_path / "run"
    save_supernet(run_dir / "supernet" / "supernet.pt", SPACE, ElasticSuperNet(SPACE).state_dict())
    genome = Genome(SPACE)
    subnet = tmp_path / "best.yaml"
    genome.to_config(genome.sample(np.random.default_rng(2), 1)[0]).to_yaml(subnet)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"name: t\nrun_dir: {run_dir}\nspace: fmnist-small\n"
        f"data: {DATA.model_dump_json()}\nquant: {RECIPE.model_dump_json()}\n"
        "supernet: {phases: [{name: full, epochs: 1, lr: 0.1, distill: false}]}\n"
    )
    pytest.importorskip("onnxruntime")
    assert main(["export", "--config", str(config), "--subnet", str(subnet)]) == 0
    out = run_dir / "export" / f"best-{SubnetConfig.from_yaml(subnet).digest()}"  # one folder per sub-net
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["hardware"]["latency_ms"] > 0
    assert set(sidecar["metrics"]) == {"val_acc_fp", "val_acc_quant", "test_acc_quant", "test_acc_onnx"}
    assert sidecar["input"]["normalization"]["mean"] == [0.2860] and sidecar["runtime"]["latency"]["median_ms"] > 0
    assert (out / "model.onnx").is_file()
    # a sub-net for another space fails before any work, with the field named
    other = load_preset("apq-imagenet")
    Genome(other).to_config(Genome(other).smallest()[0]).to_yaml(subnet)
    assert main(["export", "--config", str(config), "--subnet", str(subnet)]) == 2
    assert "does not match" in capsys.readouterr().err

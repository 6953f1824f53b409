"""The quantization-aware super network: batch-range fake quant in the elastic layers, the `quant`
training phase, continuing a trained super network, and the record of how a file was trained."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ems_ray.collect.stage import quant_recipe
from ems_ray.config import RayConfig, RunConfig
from ems_ray.quant import QuantPolicy, QuantRecipe
from ems_ray.quantizers import quant_levels
from ems_ray.space import Genome
from ems_ray.supernet import ElasticSuperNet
from ems_ray.supernet.checkpoint import (NotQuantizationAwareError, is_quantization_aware, read_supernet_file,
                                         require_quantization_aware, trained_phases)
from ems_ray.supernet.layers import batch_range_quantize
from ems_ray.train import PhaseConfig, train_supernet
from ems_ray.train.checkpoints import LocalSession
from ems_ray.train.stage import run_supernet_stage
from tiny_configs import SPACE, tiny_inputs
from test_train import KillingSession, _Killed

GENOME = Genome(SPACE)
QUANT_PHASE = {"name": "quant", "epochs": 1, "lr": 0.01, "width_fraction": 1.0, "subnets_per_step": 2,
               "quantize": True, "float_subnets": 1}


def test_batch_range_quantize_puts_values_on_the_grid():
    torch.manual_seed(0)
    x, w = torch.randn(4, 8, 5, 5), torch.randn(16, 8, 1, 1)
    same = batch_range_quantize(x, w, None, True)
    assert same[0] is x and same[1] is w
    qx, qw = batch_range_quantize(x, w, (4, 6), input_signed=True)
    for q, t, bits in ((qx, x, 6), (qw, w, 4)):
        step = float(t.abs().max()) / quant_levels(bits, True)
        codes = q / step
        assert torch.allclose(codes, codes.round(), atol=1e-4)
        assert int(codes.round().abs().max()) == quant_levels(bits, True)
    ux, _ = batch_range_quantize(x.clamp_min(0), w, (8, 4), input_signed=False)
    assert len(torch.unique(ux)) <= quant_levels(4, False) + 1 and float(ux.min()) == 0.0


def test_quantized_forward_follows_the_bit_genes():
    net = ElasticSuperNet(SPACE).eval()
    x = torch.randn(8, 1, 28, 28)
    row = GENOME.largest(bits=4)[0]
    net.set_active(row)
    float_out = net(x)
    net.set_active(row, quantized=True)
    assert net.active_quantized
    cfg = GENOME.to_config(row)
    expected = QuantPolicy.from_subnet(cfg, SPACE).layer_bits()
    for i in net.active_slots():
        block = net.blocks[i]
        assert block.expand.active_bits == expected[f"blocks.{i}.expand"][:2]
        assert block.dw.active_bits == expected[f"blocks.{i}.dw"][:2]
        assert block.project.active_bits == expected[f"blocks.{i}.project"][:2]
        assert block.expand.input_signed and not block.project.input_signed
    w4 = net(x)
    net.set_active(GENOME.largest(bits=8)[0], quantized=True)
    w8 = net(x)
    # 8 bits stays close to float, 4 bits moves further away
    assert float((w8 - float_out).abs().mean()) < float((w4 - float_out).abs().mean())
    net.set_active(row)  # float again: identical to before
    assert torch.equal(net(x), float_out)


def test_quant_phase_options_are_checked():
    assert PhaseConfig(**QUANT_PHASE).quantized_mask() == [False, True]
    with pytest.raises(ValidationError, match="float_subnets: 2 leaves no quantized sub-net; allowed values: 0..1"):
        PhaseConfig(**{**QUANT_PHASE, "float_subnets": 2})
    with pytest.raises(ValidationError, match="needs quantize: true"):
        PhaseConfig(**{**QUANT_PHASE, "quantize": False})


def _with_quant_phase(inputs):
    train = inputs.train.model_copy(update={"phases": [*inputs.train.phases, PhaseConfig(**QUANT_PHASE)]})
    inputs.train = train
    return inputs


def test_quant_phase_trains_reports_quantized_accuracy_and_resumes_identically(tmp_path):
    full = train_supernet(_with_quant_phase(tiny_inputs()), LocalSession(tmp_path / "a"))
    last = full["history"][-1]
    assert last["phase"] == "quant"
    quantized = {k for k in last if k.startswith("val_qacc_")}
    assert {"val_qacc_random0", "val_qacc_largest_low", "val_qacc_smallest_low"} <= quantized
    assert all(0 <= last[k] <= 1 for k in quantized)
    assert not any(k.startswith("val_qacc_") for k in full["history"][0])

    with pytest.raises(_Killed):
        train_supernet(_with_quant_phase(tiny_inputs()), KillingSession(tmp_path / "b", kill_after=2))
    resumed = train_supernet(_with_quant_phase(tiny_inputs()), LocalSession(tmp_path / "b"))
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def _run_config(root, inputs, **train_update) -> RunConfig:
    return RunConfig(name="tiny", run_dir=root, seed=inputs.seed, space="fmnist-small", data=inputs.data,
                     supernet=inputs.train.model_copy(update=train_update), ray=RayConfig(num_cpus=1))


def _train(cfg: RunConfig):
    return run_supernet_stage(cfg.context(), cfg.supernet, use_ray=False)


def test_continue_from_trains_only_the_new_phases_and_records_them(tmp_path):
    inputs = tiny_inputs()
    float_file = _train(_run_config(tmp_path / "float", inputs))
    blob = read_supernet_file(float_file)
    assert [p["name"] for p in trained_phases(blob)] == ["full", "kernel", "width"]
    assert not is_quantization_aware(blob)
    with pytest.raises(NotQuantizationAwareError, match="float phases only"):
        require_quantization_aware(float_file, blob, "collect quant with quant_mode: direct")

    phases = [*inputs.train.phases, PhaseConfig(**QUANT_PHASE)]
    cfg = _run_config(tmp_path / "qa", inputs, phases=phases, continue_from=str(float_file))
    qa_file = _train(cfg)
    history = json.loads((tmp_path / "qa" / "supernet" / "history.json").read_text())
    assert [h["phase"] for h in history] == ["quant"] and history[0]["epoch"] == 3
    qa = read_supernet_file(qa_file)
    assert is_quantization_aware(qa) and qa["metadata"]["quantization_aware"]
    assert [p["name"] for p in trained_phases(qa)] == ["full", "kernel", "width", "quant"]
    changed = [k for k, v in qa["state_dict"].items() if not torch.equal(v, blob["state_dict"][k])]
    assert changed  # it trained from the float weights, not from scratch
    assert all(torch.equal(blob["state_dict"][k], v) for k, v in read_supernet_file(float_file)["state_dict"].items())

    # collection measures quantized points without a fine-tune from the quantization-aware file only
    recipe = QuantRecipe(finetune_steps=40)
    assert quant_recipe(recipe, "auto", qa, qa_file).finetune_steps == 0
    assert quant_recipe(recipe, "direct", qa, qa_file).finetune_steps == 0
    assert quant_recipe(recipe, "finetune", qa, qa_file) == recipe
    assert quant_recipe(recipe, "auto", blob, float_file) == recipe
    with pytest.raises(NotQuantizationAwareError, match="collect.quant_mode: direct needs a quantization-aware"):
        quant_recipe(recipe, "direct", blob, float_file)


def test_continue_from_refuses_a_schedule_that_does_not_extend_the_file(tmp_path):
    inputs = tiny_inputs()
    float_file = _train(_run_config(tmp_path / "float", inputs))
    renamed = [p.model_copy(update={"name": f"other-{p.name}"}) if i == 1 else p
               for i, p in enumerate(inputs.train.phases)]
    for phases in (inputs.train.phases, [*renamed, PhaseConfig(**QUANT_PHASE)]):
        cfg = _run_config(tmp_path / "bad", inputs, phases=phases, continue_from=str(float_file))
        with pytest.raises(Exception, match=r"must start with them \(by name\) and add at least one more"):
            _train(cfg)


def test_an_older_file_names_its_phases_from_its_last_epoch():
    blob = {"metadata": {"fingerprint": "x", "final": {"phase": "width-2", "phase_index": 5}}}
    phases = trained_phases(blob)
    assert len(phases) == 6 and phases[-1] == {"name": "width-2", "quantize": False}
    assert not is_quantization_aware(blob)

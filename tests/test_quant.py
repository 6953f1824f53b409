"""Quantization: quantizers and KL ranges, STE gradients, policies, calibration, fine-tune, export."""
from __future__ import annotations

import json

import numpy as np
import pydantic
import pytest
import torch
import torch.nn as nn

from ems_ray.errors import InputError
from ems_ray.quant import (
    BlockBits, NotCalibratedError, QuantConv2d, QuantLinear, QuantPolicy, QuantPolicyError, apply_policy, calibrate,
    choose_range, evaluate_quantized, fake_quantize, kl_range, magnitude_histogram, max_abs_range, quant_layers,
    quant_levels, quantization_aware_finetune,
)
from ems_ray.space import Genome, SearchSpace, load_preset
from ems_ray.supernet import ElasticSuperNet, StaticSubNet, recalibrate_bn

torch.set_num_threads(1)


# ----- fixtures: one small sub-net with healthy BN statistics --------------------------------------
@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return load_preset("fmnist-small")


def _batches(n: int, batch: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g))
            for _ in range(n)]


@pytest.fixture(scope="module")
def subnet(space: SearchSpace) -> StaticSubNet:
    """The smallest sub-net with mixed bits, BN statistics estimated on its own activations."""
    genome = Genome(space)
    row = genome.smallest()[0]
    row[genome.slot_columns(2)] = 2  # pw_w gene: 8 bits (choices 4, 6, 8), so the policy is mixed
    torch.manual_seed(0)
    net = ElasticSuperNet(space).extract(genome.to_config(row))
    return recalibrate_bn(net, _batches(4, seed=1), 4)


@pytest.fixture(scope="module")
def calibrated(space: SearchSpace, subnet: StaticSubNet) -> nn.Module:
    q = apply_policy(subnet, QuantPolicy.from_subnet(subnet.config, space))
    calibrate(q, _batches(2, seed=2), 2)
    return q


# ----- quantizers --------------------------------------------------------------------------------------
def _rel_mse(x: torch.Tensor, bits: int, signed: bool = True) -> float:
    v = torch.tensor(max_abs_range(x, signed))
    return float((fake_quantize(x, v, bits, signed) - x).pow(2).mean() / x.pow(2).mean())


def test_round_trip_8_bits_near_lossless_error_grows_as_bits_fall():
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    errors = [_rel_mse(x, b) for b in (8, 6, 4, 2)]
    assert errors[0] < 1e-4
    assert all(a < b for a, b in zip(errors, errors[1:])), errors
    relu = x.clamp(0, 6)
    unsigned = [_rel_mse(relu, b, signed=False) for b in (8, 6, 4, 2)]
    assert unsigned[0] < 1e-4 and all(a < b for a, b in zip(unsigned, unsigned[1:])), unsigned


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_grid_levels_and_zero(bits: int):
    x = torch.linspace(-2, 2, 10001)
    v = torch.tensor(1.5)
    q = fake_quantize(x, v, bits, signed=True)
    levels = torch.unique(q)
    assert len(levels) == 2 * quant_levels(bits, True) + 1 == 2 ** bits - 1
    assert levels.min() == -1.5 and levels.max() == 1.5 and (levels == 0).any()
    u = torch.unique(fake_quantize(x, v, bits, signed=False))
    assert len(u) == 2 ** bits and u.min() == 0 and abs(float(u.max()) - 1.5) < 1e-6


def test_kl_range_never_wider_than_max_abs():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    samples = {
        "gauss": (torch.randn(20000, generator=g), True),
        "heavy": (torch.distributions.StudentT(2.0).sample((20000,)), True),  # torch's global RNG: seeded below
        "relu6": (torch.randn(20000, generator=g).clamp(0, 6), False),
    }
    for name, (x, signed) in samples.items():
        top = max_abs_range(x, signed)
        for bits in (2, 4, 6, 8):
            v = choose_range(x, bits, signed)
            assert 0 < v <= top + 1e-6, (name, bits, v, top)
    heavy = samples["heavy"][0]
    assert choose_range(heavy, 4) < 0.5 * max_abs_range(heavy, True)  # outliers are clipped at low bits
    # At 4 bits the KL range also beats max-abs on mean squared error for a Laplace tensor.
    lap = torch.distributions.Laplace(0.0, 1.0).sample((20000,))
    err = lambda v: float((fake_quantize(lap, torch.tensor(v), 4, True) - lap).pow(2).mean())  # noqa: E731
    assert err(choose_range(lap, 4)) < err(max_abs_range(lap, True))


def test_kl_range_degenerate_inputs():
    assert kl_range(torch.zeros(2048), 0.0, 8, True) > 0
    assert choose_range(torch.zeros(100), 4) > 0
    small = torch.randn(50, generator=torch.Generator().manual_seed(1))  # too few values: max-abs range
    assert choose_range(small, 8) == pytest.approx(float(small.abs().max()))
    hist = magnitude_histogram(torch.tensor([0.0, 0.0, 1.0, -2.0]), 2.0, signed=True, bins=4)
    assert hist.tolist() == [0.0, 0.0, 1.0, 1.0]  # zeros left out, |x| binned


# ----- straight-through estimator -----------------------------------------------------------------------
def test_ste_gradients_pass_inside_range_zero_outside():
    # v = 1 at 4 bits: signed step 1/7, unsigned step 1/15; ±3 and 2.5 lie far outside.
    x = torch.tensor([-3.0, -0.5, 0.0, 0.2, 0.9, 2.5], requires_grad=True)
    fake_quantize(x, torch.tensor(1.0), 4, signed=True).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    x.grad = None
    fake_quantize(x, torch.tensor(1.0), 4, signed=False).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0]


def test_ste_through_quant_conv():
    torch.manual_seed(0)
    conv = QuantConv2d.from_float(nn.Conv2d(2, 3, 1, bias=False), w_bits=4, a_bits=4, input_signed=True)
    conv.calibrate_weight()
    conv.set_input_range(1.0, signed=True)
    x = torch.full((1, 2, 2, 2), 0.5)
    x[0, 0, 0, 0] = 5.0  # outside [-1, 1]
    x.requires_grad_(True)
    conv(x).sum().backward()
    assert x.grad[0, :, 0, 0].eq(0).tolist() == [True, False]  # clipped element: zero gradient
    assert (x.grad.flatten()[1:] != 0).sum() >= 6
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


# ----- policies -----------------------------------------------------------------------------------------
def test_policy_from_subnet_quantizes_every_layer_at_config_bits(space, subnet):
    policy = QuantPolicy.from_subnet(subnet.config, space)
    q = apply_policy(subnet, policy)
    layers = quant_layers(q)
    active = [int(k) for k in subnet.blocks.keys()]
    assert sorted(policy.blocks) == active
    assert len(layers) == 5 + 3 * len(active)
    for i in active:
        bc = subnet.config.blocks[i]
        for conv, (w, a) in (("expand", (bc.pw_w_bits, bc.pw_a_bits)), ("dw", (bc.dw_w_bits, bc.dw_a_bits)),
                             ("project", (bc.pw_w_bits, bc.pw_a_bits))):
            layer = layers[f"blocks.{i}.{conv}"]
            assert (layer.w_bits, layer.a_bits) == (w, a), (i, conv)
        assert layers[f"blocks.{i}.expand"].input_signed is True and layers[f"blocks.{i}.dw"].input_signed is False
    assert isinstance(layers["head.classifier"], QuantLinear) and layers["stem.conv"].w_bits == space.fixed_bits
    assert not quant_layers(subnet)  # the original is untouched


def test_policy_touches_exactly_the_layers_it_names(space, subnet):
    active = [int(k) for k in subnet.blocks.keys()]
    chosen = active[1]
    bits = BlockBits(pw_w_bits=4, pw_a_bits=6, dw_w_bits=2, dw_a_bits=8)
    q = apply_policy(subnet, QuantPolicy(blocks={chosen: bits}, fixed_bits=None))
    assert set(quant_layers(q)) == {f"blocks.{chosen}.expand", f"blocks.{chosen}.dw", f"blocks.{chosen}.project"}
    assert q.get_submodule(f"blocks.{chosen}.dw").w_bits == 2
    float_convs = [n for n, m in q.named_modules() if type(m) is nn.Conv2d]
    assert len(float_convs) == 3 + 3 * (len(active) - 1) + 1  # stem, first block (2), other blocks, head
    fixed_only = apply_policy(subnet, QuantPolicy(blocks={}, fixed_bits=6))
    assert set(quant_layers(fixed_only)) == {"stem.conv", "first_block.dw", "first_block.project", "head.conv.conv",
                                              "head.classifier"}


def test_invalid_policies_fail_naming_the_field(space, subnet):
    with pytest.raises(pydantic.ValidationError, match="pw_w_bits"):
        QuantPolicy(blocks={0: {"pw_w_bits": 9, "pw_a_bits": 8, "dw_w_bits": 8, "dw_a_bits": 8}})
    with pytest.raises(pydantic.ValidationError, match="dw_a_bits"):
        BlockBits(pw_w_bits=8, pw_a_bits=8, dw_w_bits=8, dw_a_bits=1)
    with pytest.raises(pydantic.ValidationError, match="fixed_bits"):
        QuantPolicy(fixed_bits=16)
    bits = BlockBits(pw_w_bits=8, pw_a_bits=8, dw_w_bits=8, dw_a_bits=8)
    with pytest.raises(QuantPolicyError, match=r"blocks\[99\]: slot 99 does not exist"):
        apply_policy(subnet, QuantPolicy(blocks={99: bits}))
    inactive = next(s.index for s in space.slots if str(s.index) not in subnet.blocks)
    with pytest.raises(QuantPolicyError, match=rf"blocks\[{inactive}\]: slot {inactive} is not in this sub-net"):
        apply_policy(subnet, QuantPolicy(blocks={inactive: bits}))
    with pytest.raises(QuantPolicyError, match="StaticSubNet"):
        apply_policy(nn.Sequential(nn.Conv2d(1, 1, 1)), QuantPolicy())


def test_policy_json_round_trip_and_priced_config(space, subnet):
    policy = QuantPolicy.uniform(subnet.config, space, w_bits=4, a_bits=4)
    again = QuantPolicy.model_validate(json.loads(policy.model_dump_json()))
    assert again == policy
    priced = policy.apply_to_config(subnet.config)
    for i in policy.blocks:
        assert priced.blocks[i].bits() == (4, 4, 4, 4)


# ----- calibration, accuracy of the fake-quant net, fine-tune ---------------------------------------
def test_forward_before_calibration_fails_clearly(space, subnet):
    q = apply_policy(subnet, QuantPolicy.from_subnet(subnet.config, space))
    with pytest.raises(NotCalibratedError, match="calibrate"):
        q(torch.zeros(1, 1, 28, 28))


def test_calibration_sets_ranges_and_signs(calibrated):
    for name, layer in quant_layers(calibrated).items():
        assert layer.calibrated and float(layer.input_range) > 0 and float(layer.weight_range) > 0, name
        assert float(layer.weight_range) <= float(layer.weight.detach().abs().max()) + 1e-6
    layers = quant_layers(calibrated)
    assert layers["stem.conv"].input_signed is True  # the (normalised) image goes negative
    assert layers["head.classifier"].input_signed is False


def test_output_error_grows_as_bits_fall(space, subnet):
    x = torch.cat([b[0] for b in _batches(2, seed=3)])
    with torch.no_grad():
        ref = subnet.eval()(x)
    errors = {}
    for bits in (8, 4):
        q = apply_policy(subnet, QuantPolicy.uniform(subnet.config, space, bits, bits, fixed_bits=bits))
        calibrate(q, _batches(2, seed=2), 2)
        with torch.no_grad():
            errors[bits] = float((q(x) - ref).pow(2).mean() / ref.pow(2).mean())
    assert errors[8] < 0.01 and errors[8] < errors[4] / 10, errors


def test_state_dict_round_trip_restores_ranges_and_bits(space, subnet, calibrated):
    other = apply_policy(subnet, QuantPolicy.uniform(subnet.config, space, 2, 2))  # other bits, uncalibrated
    other.load_state_dict(calibrated.state_dict())
    for (name, a), b in zip(quant_layers(other).items(), quant_layers(calibrated).values()):
        assert (a.w_bits, a.a_bits, a.input_signed, a.calibrated) == (b.w_bits, b.a_bits, b.input_signed, True), name
    x = _batches(1, seed=5)[0][0]
    with torch.no_grad():
        assert torch.equal(other.eval()(x), calibrated.eval()(x))


def test_finetune_reproducible_and_bn_aware_evaluation(space, subnet, calibrated):
    loader = _batches(3, batch=8, seed=4)
    runs = []
    for _ in range(2):
        q = apply_policy(subnet, QuantPolicy.from_subnet(subnet.config, space))
        q.load_state_dict(calibrated.state_dict())
        result = quantization_aware_finetune(q, loader, steps=4, lr=0.01, teacher=subnet, seed=7)
        runs.append((q, result))
    (a, ra), (b, rb) = runs
    assert ra.losses == rb.losses and len(ra.losses) == 4 and np.isfinite(ra.losses).all()
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), na
    changed = any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), calibrated.parameters()))
    assert changed
    acc, loss = evaluate_quantized(a, loader, loader, bn_batches=2)
    assert 0.0 <= acc <= 1.0 and np.isfinite(loss)


def test_finetune_requires_calibration(space, subnet):
    q = apply_policy(subnet, QuantPolicy.from_subnet(subnet.config, space))
    with pytest.raises(ValueError, match="calibrate"):
        quantization_aware_finetune(q, _batches(1), steps=1, lr=0.01)


# ----- export -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed(space, subnet) -> nn.Module:
    """The sub-net at 4/6/8-bit weights and 6/8-bit inputs: sub-8-bit codes, yet a random-init
    network whose predictions are stable enough to compare (at 4-bit inputs its logits are noise)."""
    bits = BlockBits(pw_w_bits=4, pw_a_bits=8, dw_w_bits=6, dw_a_bits=6)
    blocks = QuantPolicy.from_subnet(subnet.config, space).blocks
    q = apply_policy(subnet, QuantPolicy(blocks={i: bits for i in blocks}, fixed_bits=8))
    calibrate(q, _batches(2, seed=2), 2)
    return q


@pytest.fixture(scope="module")
def exported(tmp_path_factory, subnet, mixed):
    """`mixed` exported once."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from ems_ray.quant import export_quantized

    out = tmp_path_factory.mktemp("export")
    cost = {"latency_ms": 0.1, "energy_mj": 0.2}
    return export_quantized(mixed, subnet.config, mixed.quant_policy, out, cost=cost,
                            calibration=_batches(4, seed=2), metrics={"val_acc": 0.5},
                            normalization={"mean": [0.286], "std": [0.353]}, latency_repeats=5)


def test_export_runs_every_quantized_conv_as_an_integer_kernel(exported, mixed):
    """ONNX Runtime's profile of a run: each quantized conv a QLinearConv, the classifier a QGemm."""
    from ems_ray.quant import QuantConv2d, executed_ops

    ran = executed_ops(exported.onnx, "images", (1, 28, 28), batch=2, runs=2)
    n_convs = sum(isinstance(layer, QuantConv2d) for layer in quant_layers(mixed).values())
    assert ran.counts.get("QLinearConv", 0) == n_convs and "Conv" not in ran.counts and "FusedConv" not in ran.counts
    assert ran.counts.get("QGemm") == 1 and "Gemm" not in ran.counts
    assert ran.counts.get("QLinearAdd", 0) >= 1  # the first block's residual
    assert abs(sum(ran.time_share.values()) - 1) < 1e-6


def test_export_reload_agrees_with_the_fake_quant_model(exported, subnet, mixed):
    from ems_ray.quant import ExportError, export_quantized, load_exported

    loaded = load_exported(exported.onnx.parent, num_threads=1)
    x, _ = _batches(1, batch=128, seed=6)[0]
    with torch.no_grad():
        ref = mixed.eval()(x)
    out = loaded(x)
    assert out.shape == ref.shape
    # Equal but for the 8-bit projection outputs and residual sums the integer graph adds (see
    # docs/quantization.md): predictions agree (random init: small margins), logits are close.
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.9
    assert float((out - ref).abs().mean()) < 0.2 * float(ref.abs().mean())
    side = loaded.sidecar
    assert side["runtime"]["integer_convs"] == side["runtime"]["quantized_convs"] > 0
    assert side["runtime"]["latency"]["median_ms"] > 0 and side["runtime"]["latency"]["batch"] == 1
    assert side["input"]["shape"] == ["batch", 1, 28, 28] and side["input"]["normalization"]["mean"] == [0.286]
    assert side["hardware"] == {"latency_ms": 0.1, "energy_mj": 0.2} and side["metrics"] == {"val_acc": 0.5}
    assert loaded.policy == mixed.quant_policy and loaded.config == subnet.config
    assert {entry["name"] for entry in side["layers"]} == set(quant_layers(mixed))
    for entry in side["layers"]:  # a b-bit layer's codes: 2^b - 1 (signed) or 2^b levels on the uint8 grid
        lo, hi = entry["input_grid"]["codes"]
        assert hi - lo + 1 == (2 ** entry["a_bits"] - 1 if entry["input_signed"] else 2 ** entry["a_bits"])
    with pytest.raises(ExportError, match="sidecar"):
        load_exported(exported.onnx.parent / "missing.json")
    with pytest.raises(ExportError, match="calibrate"):
        export_quantized(apply_policy(subnet, mixed.quant_policy), subnet.config, mixed.quant_policy,
                         exported.onnx.parent / "x", calibration=_batches(1))


def test_sub_8_bit_codes_stay_on_their_grid(exported):
    """The codes feeding a 6-bit layer never leave its 64 levels (the Clip on the codes)."""
    import onnx
    from onnx import helper

    from ems_ray.quant import ort_session

    model = onnx.load(str(exported.onnx))
    clips = [n.output[0] for n in model.graph.node if n.op_type == "Clip"]
    assert clips, "6-bit inputs need Clips on their codes"
    model.graph.output.extend([helper.make_empty_tensor_value_info(name) for name in clips])
    session = ort_session(model.SerializeToString(), 1)
    x, _ = _batches(1, batch=8, seed=7)[0]
    outs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": x.numpy()})))
    lows_highs = {(n.output[0]): (int(onnx.numpy_helper.to_array(_init(model, n.input[1]))),
                                  int(onnx.numpy_helper.to_array(_init(model, n.input[2]))))
                  for n in model.graph.node if n.op_type == "Clip"}
    for name in clips:
        lo, hi = lows_highs[name]
        assert outs[name].dtype == np.uint8 and outs[name].min() >= lo and outs[name].max() <= hi


def _init(model, name):
    return next(i for i in model.graph.initializer if i.name == name)


def test_weight_storage_follows_the_host_kernels(monkeypatch):
    """int8 weights where ONNX Runtime's u8 x s8 kernels are exact (VNNI, non-x86), uint8 on x86
    without VNNI, where they saturate; a bad choice names the allowed values."""
    from ems_ray.quant import _runtime

    monkeypatch.setattr(_runtime.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(_runtime, "cpu_flags", lambda: {"avx2", "fma"})
    assert _runtime.resolve_weight_storage("auto")[0] == "uint8"
    monkeypatch.setattr(_runtime, "cpu_flags", lambda: {"avx2", "avx512_vnni"})
    assert _runtime.resolve_weight_storage("auto")[0] == "int8"
    monkeypatch.setattr(_runtime.platform, "machine", lambda: "aarch64")
    assert _runtime.resolve_weight_storage("auto")[0] == "int8"
    assert _runtime.resolve_weight_storage("uint8") == ("uint8", "chosen")
    with pytest.raises(InputError, match=r"weight_storage: 'int4' not allowed; allowed values: \['auto', 'int8', 'uint8'\]"):
        _runtime.resolve_weight_storage("int4")

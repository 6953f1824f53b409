"""Search space, sub-net validation, sampling/evolution operators and the one-hot encoding."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from ems_ray.space import (
    Encoding, Genome, InvalidSubnetError, SearchSpace, SubnetConfig, load_preset, preset_names,
    validate_subnet,
)

PRESETS = ["apq-imagenet", "fmnist-small"]


@pytest.fixture(params=PRESETS)
def space(request) -> SearchSpace:
    return load_preset(request.param)


def test_presets_listed():
    assert set(PRESETS) <= set(preset_names())


def test_unknown_preset_names_allowed_values():
    with pytest.raises(ValueError, match="allowed values: .*apq-imagenet"):
        load_preset("resnet")


def test_apq_imagenet_matches_design():
    sp = load_preset("apq-imagenet")
    assert len(sp.slots) == 21
    assert [s.in_channels for s in sp.slots if s.position == 0] == [16, 24, 40, 80, 96, 192]
    assert [st.out_channels for st in sp.stages] == [24, 40, 80, 96, 192, 320]
    assert [st.stride for st in sp.stages] == [2, 2, 2, 1, 2, 1]
    assert sp.slots[0].mid_choices == (64, 72, 80, 88, 96)
    assert sp.slots[-1].mid_choices[0] == 768 and sp.slots[-1].mid_choices[-1] == 1152
    assert sp.final_resolution == 7


def test_yaml_round_trip(space, tmp_path):
    path = tmp_path / "space.yaml"
    space.to_yaml(path)
    assert SearchSpace.from_yaml(path) == space


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"kernel_choices": [3, 9]}, "kernel_choices.*allowed values"),
        ({"bits": {"pw_w": [3, 8, 9]}}, "pw_w.*allowed values"),
        ({"stages": []}, "stages must not be empty"),
        ({"expand_min": 7.0}, "expand_max"),
    ],
)
def test_space_validation_names_field(patch, message):
    data = load_preset("fmnist-small").model_dump()
    data.update(patch)
    with pytest.raises(ValidationError, match=message):
        SearchSpace.model_validate(data)


def test_subnet_validation_lists_each_problem():
    sp = load_preset("apq-imagenet")
    cfg = Genome(sp).to_config(Genome(sp).largest()[0])
    blocks = list(cfg.blocks)
    blocks[3] = blocks[3].model_copy(update={"kernel": 9, "pw_w_bits": 3})
    blocks[0] = blocks[0].model_copy(update={"mid_channels": 100})
    bad = cfg.model_copy(update={"blocks": blocks, "depths": [5, 2, 2, 2, 2, 1]})
    with pytest.raises(InvalidSubnetError) as err:
        validate_subnet(sp, bad)
    text = str(err.value)
    assert "depths[0]: 5 not allowed; allowed values: [2, 3, 4]" in text
    assert "blocks[3].kernel: 9 not allowed; allowed values: [3, 5, 7]" in text
    assert "blocks[3].pw_w_bits: 3 not allowed; allowed values: [4, 6, 8]" in text
    assert "blocks[0].mid_channels: 100" in text
    assert len(err.value.problems) == 4


def test_subnet_for_other_space_rejected():
    sp, other = load_preset("apq-imagenet"), load_preset("fmnist-small")
    cfg = Genome(other).to_config(Genome(other).smallest()[0])
    with pytest.raises(InvalidSubnetError, match="does not match"):
        validate_subnet(sp, cfg)


def test_subnet_yaml_round_trip(space, tmp_path):
    g = Genome(space)
    cfg = g.to_config(g.sample(np.random.default_rng(1), 1)[0])
    path = tmp_path / "subnet.yaml"
    cfg.to_yaml(path)
    assert SubnetConfig.from_yaml(path, space) == cfg


def test_sampling_is_valid_and_seeded(space):
    g = Genome(space)
    a = g.sample(np.random.default_rng(7), 200)
    b = g.sample(np.random.default_rng(7), 200)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, g.sample(np.random.default_rng(8), 200))
    assert (a >= 0).all() and (a < g.choice_counts).all()
    for cfg in g.to_configs(a[:20]):
        validate_subnet(space, cfg)
    # every choice of every column is reachable
    big = g.sample(np.random.default_rng(0), 5000)
    assert all(len(np.unique(big[:, c])) == g.choice_counts[c] for c in range(g.width))


def test_config_gene_round_trip(space):
    g = Genome(space)
    genes = g.sample(np.random.default_rng(3), 30)
    assert np.array_equal(g.from_configs(g.to_configs(genes)), genes)


def test_mutation_rate_and_validity(space):
    g = Genome(space)
    rng = np.random.default_rng(0)
    parents = g.sample(rng, 2000)
    children = g.mutate(parents, rng, prob=0.1)
    assert (children >= 0).all() and (children < g.choice_counts).all()
    # a resampled gene keeps its value with probability 1/choices, so the change rate is below 0.1
    expected = 0.1 * np.mean(1 - 1 / g.choice_counts)
    assert abs(np.mean(children != parents) - expected) < 0.01
    assert np.array_equal(g.mutate(parents, rng, prob=0.0), parents)


def test_crossover_takes_genes_from_parents(space):
    g = Genome(space)
    rng = np.random.default_rng(0)
    a, b = g.sample(rng, 500), g.sample(rng, 500)
    child = g.crossover(a, b, rng)
    assert ((child == a) | (child == b)).all()
    assert 0.3 < np.mean(child == a) < 0.8


def test_active_slots_follow_depth():
    sp = load_preset("apq-imagenet")
    g = Genome(sp)
    small, large = g.active(g.smallest()), g.active(g.largest())
    assert small.sum() == 2 * 5 + 1 and large.sum() == 21


def test_encoding_dimensions_follow_paper_layout():
    sp = load_preset("apq-imagenet")
    enc = Encoding(sp)
    fp = sum(len(sp.kernel_choices) + len(s.mid_choices) for s in sp.slots)
    assert enc.fp_dim == fp == 21 * 3 + 457
    assert enc.quant_dim == 21 * 4 * 3 == 252
    assert enc.dim == 772


def test_encoding_layout_fp_first_skipped_blocks_zero():
    sp = load_preset("apq-imagenet")
    g, enc = Genome(sp), Encoding(sp)
    genes = g.smallest()
    x = enc.encode(genes)[0]
    # slot 0: kernel 3 and mid 64 → first entries of its kernel and mid segments
    assert x[0] == 1 and x[1] == x[2] == 0 and x[3] == 1
    # smallest uses 11 of 21 slots: 2 ones per slot in the FP part, 4 in the quant part
    assert x[: enc.fp_dim].sum() == 11 * 2 and x[enc.fp_dim:].sum() == 11 * 4
    # slot 2 (third block of stage 0) is skipped: all zeros
    seg = slice(3 + 5 + 3 + 7 + 0, 3 + 5 + 3 + 7 + 3 + 7)
    assert x[seg].sum() == 0
    assert np.array_equal(enc.encode(genes, fp_only=True)[0], x[: enc.fp_dim])


def test_encode_decode_round_trip(space):
    g, enc = Genome(space), Encoding(space)
    genes = g.sample(np.random.default_rng(5), 500)
    assert np.array_equal(enc.decode(enc.encode(genes)), g.canonical(genes))
    fp = enc.decode(enc.encode(genes, fp_only=True))
    assert np.array_equal(g.with_bits(fp, 8), g.with_bits(g.canonical(genes), 8))


def test_decode_rejects_bad_rows():
    sp = load_preset("fmnist-small")
    enc = Encoding(sp)
    with pytest.raises(ValueError, match="expects"):
        enc.decode(np.zeros((1, enc.dim + 1)))
    x = enc.encode(Genome(sp).largest())
    x[0, 0] = 1  # two kernels set
    with pytest.raises(ValueError, match="not one-hot"):
        enc.decode(x)

"""The search's vectorised hot paths against the straightforward formulas they replaced: the same
values on random genes (exact for integers and masks, float rounding for LUT sums)."""
from __future__ import annotations

import numpy as np
import pytest

from ems_ray.errors import InputError
from ems_ray.hardware import build_lut
from ems_ray.search._evolution import _first_copies, _keys
from ems_ray.space import Genome, load_preset
from ems_ray.space.genome import DW_A, DW_W, GENES_PER_SLOT, KERNEL, MID, PW_A, PW_W


def _genes(genome: Genome, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.concatenate([genome.sample(rng, n), genome.sample_spread(rng, n), genome.largest(), genome.smallest()])


@pytest.fixture(scope="module", params=["fmnist-small", "apq-imagenet"])
def genome(request) -> Genome:
    return Genome(load_preset(request.param))


def test_active_and_canonical_equal_the_depth_formula(genome):
    genes = _genes(genome)
    active = genome._slot_position[None, :] < genome.depths(genes)[:, genome._slot_stage]
    assert np.array_equal(genome.active(genes), active)
    keep = np.ones(genes.shape, dtype=bool)
    keep[:, genome.n_stages:] = np.repeat(active, GENES_PER_SLOT, axis=1)
    canonical = genome.canonical(genes)
    assert canonical.dtype == genes.dtype and np.array_equal(canonical, np.where(keep, genes, 0))
    assert 0 < active.mean() < 1  # both skipped and used slots occur


def test_keys_are_row_bytes_and_first_copies_keep_order(genome):
    genes = _genes(genome, 50)
    genes = np.concatenate([genes, genes[[7, 3, 7]]])
    assert _keys(genes) == [row.tobytes() for row in genes]
    first = _first_copies(genes)
    assert list(first) == sorted({row.tobytes(): i for i, row in reversed(list(enumerate(genes)))}.values())


def test_crossover_takes_every_gene_from_a_parent_half_the_time(genome):
    rng = np.random.default_rng(0)
    a, b = genome.sample(rng, 2000), genome.sample(rng, 2000)
    child = genome.crossover(a, b, rng)
    assert child.dtype == np.int16 and child.shape == a.shape
    assert np.all((child == a) | (child == b))
    differ = a != b
    share = (child == a)[differ].mean()
    assert abs(share - 0.5) < 0.01, share
    one = genome.crossover(a[0], b[0], np.random.default_rng(1))  # a single pair broadcasts
    assert one.shape == (1, genome.width)


def test_mutate_equals_where_on_the_same_draws(genome):
    genes = _genes(genome, 100)
    got = genome.mutate(genes, np.random.default_rng(5), 0.3)
    rng = np.random.default_rng(5)
    fresh = genome.sample(rng, len(genes))
    expected = np.where(rng.random(genes.shape) < 0.3, fresh, genes)
    assert got.dtype == np.int16 and np.array_equal(got, expected)


def _column_formula(table, genes: np.ndarray) -> dict[str, np.ndarray]:
    """The LUT gathered per gene column with `np.where` over skipped slots (its first vectorised form)."""
    g = table.genome
    active = g.active(genes)[..., None]
    col = {gene: genes[:, g.slot_columns(gene)].astype(np.intp) for gene in (KERNEL, MID, PW_W, PW_A, DW_W, DW_A)}
    slot = np.arange(g.n_slots)[None, :]
    pw = (slot, col[MID], col[PW_W], col[PW_A])
    dw = (slot, col[MID], col[KERNEL], col[DW_W], col[DW_A])
    f = np.where(active, table._pw_f[pw] + table._dw_f[dw], 0.0).sum(axis=1) + table._fixed_f
    n = np.where(active, table._pw_i[pw] + table._dw_i[dw], 0).sum(axis=1) + table._fixed_i
    return {"latency_ms": f[:, 0], "energy_mj": f[:, 1], "macs": n[:, 0], "bitops": n[:, 1]}


def test_lut_score_equals_the_column_formula_and_keys_select(genome):
    table = build_lut(genome.space)
    genes = _genes(genome)
    got, expected = table.score(genes), _column_formula(table, genes)
    for key in ("macs", "bitops"):
        assert got[key].dtype == np.int64 and np.array_equal(got[key], expected[key])
    for key in ("latency_ms", "energy_mj"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12)
    some = table.score(genes, ("bitops", "latency_ms"))
    assert list(some) == ["bitops", "latency_ms"]
    assert np.array_equal(some["bitops"], got["bitops"]) and np.array_equal(some["latency_ms"], got["latency_ms"])
    with pytest.raises(InputError, match="allowed values"):
        table.score(genes, ("latency",))

"""The gathered scoring path: the predictor's first layer as a sum of the weight rows a one-hot row
selects gives `predict`'s scores to float rounding, for FP and quantization-aware predictors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ems_ray.predictor import AccuracyPredictor, MLPPredictor
from ems_ray.search import CandidateScorer
from ems_ray.search._scoring import _gathered_accuracy
from ems_ray.space import Encoding, Genome, load_preset


def _predictor(space, kind: str, seed: int = 0) -> AccuracyPredictor:
    enc = Encoding(space)
    torch.manual_seed(seed)
    model = MLPPredictor(enc.fp_dim, enc.quant_dim if kind == "quant" else 0, hidden=64, layers=3)
    model.set_target_scale(0.8, 0.5)  # outputs spread over ~0.01, real accuracies
    return AccuracyPredictor(model, space, kind)


def _genes(space, n: int = 300) -> np.ndarray:
    genome = Genome(space)
    rng = np.random.default_rng(1)
    return np.concatenate([genome.sample(rng, n), genome.sample_spread(rng, n), genome.largest(8),
                           genome.smallest(4)])


@pytest.mark.parametrize("preset", ["fmnist-small", "apq-imagenet"])
def test_active_indices_are_the_ones_of_the_encoding(preset):
    space = load_preset(preset)
    enc, genes = Encoding(space), _genes(space, 50)
    for fp_only, width in ((False, enc.dim), (True, enc.fp_dim)):
        x, idx = enc.encode(genes, fp_only=fp_only), enc.active_indices(genes, fp_only=fp_only)
        assert x.shape[1] == width and idx.max() <= width
        for row, positions in zip(x, idx):
            assert np.array_equal(np.flatnonzero(row), np.sort(positions[positions < width]))


@pytest.mark.parametrize("preset", ["fmnist-small", "apq-imagenet"])
@pytest.mark.parametrize("kind", ["fp", "quant"])
def test_gathered_accuracy_equals_predict(preset, kind):
    space = load_preset(preset)
    predictor, genes = _predictor(space, kind), _genes(space)
    expected = predictor.predict(genes)
    got = _gathered_accuracy(predictor, genes)
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.std(expected) > 1e-3  # the rows differ, so equal scores are not one constant


def test_scorer_gathers_and_follows_weight_updates(scorer):
    space = scorer.space
    predictor, genes = _predictor(space, "quant"), _genes(space, 40)
    gathered = CandidateScorer(predictor, scorer.table)
    np.testing.assert_allclose(gathered.accuracy(genes), predictor.predict(genes), atol=1e-5)
    with torch.no_grad():  # an in-place update (as an optimizer step) must not leave a stale table
        predictor.model.quant_in.weight.add_(0.5)
    np.testing.assert_allclose(gathered.accuracy(genes), predictor.predict(genes), atol=1e-5)

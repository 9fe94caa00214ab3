"""Helpers of notebook 04: expected best score over n runs, freezing lower encoder layers."""

import numpy as np
import pytest
from tiny import tiny_causal_lm, tiny_classifier

from utils.evaluation import expected_max_score
from utils.models import count_parameters, freeze_lower_layers


def test_expected_max_goes_from_the_mean_to_the_maximum():
    scores = [0.70, 0.80, 0.75, 0.90]
    assert expected_max_score(scores, 1) == pytest.approx(np.mean(scores))
    curve = expected_max_score(scores, [1, 2, 5, 50])
    assert np.all(np.diff(curve) > 0)
    assert curve[-1] == pytest.approx(0.90, abs=1e-5)


def test_expected_max_matches_a_simulation_and_handles_ties():
    scores = np.array([0.5, 0.5, 0.6, 0.8, 0.8, 0.9])
    draws = np.random.default_rng(0).choice(scores, size=(200_000, 3)).max(axis=1)
    assert expected_max_score(scores, 3) == pytest.approx(draws.mean(), abs=2e-3)
    # two draws from {0, 1}: the best is 1 unless both are 0 (chance 1/4)
    assert expected_max_score([0.0, 1.0], 2) == pytest.approx(0.75)


def test_expected_max_rejects_bad_input():
    with pytest.raises(ValueError):
        expected_max_score([], 2)
    with pytest.raises(ValueError):
        expected_max_score([0.5], 0)


def test_freezing_embeddings_and_first_layers():
    model = tiny_classifier()
    total = count_parameters(model)
    frozen = freeze_lower_layers(model, 1)
    assert frozen == sum(p.numel() for p in model.bert.embeddings.parameters()) + sum(
        p.numel() for p in model.bert.encoder.layer[0].parameters()
    )
    assert count_parameters(model, trainable_only=True) == total - frozen
    assert all(p.requires_grad for p in model.bert.encoder.layer[1].parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    assert freeze_lower_layers(model, 1) == 0  # already frozen: nothing new


def test_freezing_checks_its_arguments():
    with pytest.raises(ValueError, match="between 0 and 2"):
        freeze_lower_layers(tiny_classifier(), 3)
    with pytest.raises(ValueError, match="no embeddings"):
        freeze_lower_layers(tiny_causal_lm(), 1)
    model = tiny_classifier()
    assert freeze_lower_layers(model, 0, freeze_embeddings=False) == 0

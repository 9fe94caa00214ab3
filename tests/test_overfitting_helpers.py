"""Helpers of notebook 04: expected best score over n runs, intervals paired by seed, freezing lower encoder layers."""

import numpy as np
import pytest
from tiny import tiny_causal_lm, tiny_classifier

from utils.evaluation import expected_max_score, seed_paired_interval
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


def test_seed_paired_interval_reduces_to_a_t_interval_over_seeds():
    from scipy.stats import t

    seed_effects = np.array([0.10, 0.25, 0.15, 0.30])
    differences = np.repeat(seed_effects[:, None], 50, axis=1)  # every sentence moves alike: only seeds vary
    mean, lower, upper = seed_paired_interval(differences)
    half = t.ppf(0.975, 3) * seed_effects.std(ddof=1) / 2
    assert mean == pytest.approx(seed_effects.mean())
    assert (lower, upper) == pytest.approx((mean - half, mean + half))


def test_seed_paired_interval_reduces_to_a_t_interval_over_examples():
    from scipy.stats import t

    example_effects = np.random.default_rng(0).normal(0.2, 0.5, size=300)
    mean, lower, upper = seed_paired_interval(np.tile(example_effects, (3, 1)))  # every seed alike
    half = t.ppf(0.975, 299) * example_effects.std(ddof=1) / np.sqrt(300)
    assert (lower, upper) == pytest.approx((mean - half, mean + half))


def test_seed_paired_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(400):
        table = 0.1 + rng.normal(0, 0.05, (4, 1)) + rng.normal(0, 0.3, (1, 200)) + rng.normal(0, 0.3, (4, 200))
        _, lower, upper = seed_paired_interval(table)
        covered += lower <= 0.1 <= upper
    assert 0.92 <= covered / 400 <= 0.995


def test_seed_paired_interval_of_identical_runs_is_a_point():
    assert seed_paired_interval(np.full((3, 5), 0.25)) == (0.25, 0.25, 0.25)


def test_seed_paired_interval_rejects_bad_input():
    with pytest.raises(ValueError, match="seeds x examples"):
        seed_paired_interval([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="seeds x examples"):
        seed_paired_interval([[0.1, 0.2]])
    with pytest.raises(ValueError, match="finite"):
        seed_paired_interval([[0.1, np.nan], [0.2, 0.3]])
    with pytest.raises(ValueError, match="confidence"):
        seed_paired_interval([[0.1, 0.2], [0.2, 0.3]], confidence=95)

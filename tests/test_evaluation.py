"""Metrics, bootstrap intervals, calibration, prediction helpers and the prompting baseline."""

import doctest
import subprocess
import sys
from pathlib import Path

import evaluate
import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax
from sklearn.metrics import accuracy_score as sk_accuracy
from sklearn.metrics import f1_score, precision_score, recall_score
from tiny import tiny_causal_lm, tiny_classifier, tiny_loader

from utils.evaluation import (
    LOCAL_METRICS,
    ReliabilityBins,
    accuracy_score,
    bootstrap_interval,
    classification_metrics,
    evaluate_classifier,
    expected_calibration_error,
    fit_temperature,
    load_metric,
    macro_f1_score,
    mean_difference,
    paired_bootstrap_difference,
    predict,
    reliability_bins,
    score_label_words,
)
from utils.language_modeling import first_token_ids, next_token_logprobs
from utils.models import load_tokenizer

ROOT = Path(__file__).resolve().parent.parent

rng = np.random.default_rng(0)
PREDICTIONS = rng.integers(0, 2, 300)
REFERENCES = np.where(rng.random(300) < 0.8, PREDICTIONS, 1 - PREDICTIONS)
THREE_CLASS_PREDICTIONS = rng.integers(0, 3, 300)
THREE_CLASS_REFERENCES = np.where(rng.random(300) < 0.7, THREE_CLASS_PREDICTIONS, rng.integers(0, 3, 300))


def test_the_course_ships_its_metrics_locally():
    assert set(LOCAL_METRICS) == {"accuracy", "precision", "recall", "f1"}
    with pytest.raises(ValueError, match="ships accuracy, f1, precision, recall"):
        load_metric("bleu")


@pytest.mark.parametrize("average", ["binary", "macro", "weighted", "micro"])
def test_local_metrics_agree_with_scikit_learn(average):
    for name, reference in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        ours = load_metric(name).compute(predictions=PREDICTIONS, references=REFERENCES, average=average)[name]
        assert ours == pytest.approx(reference(REFERENCES, PREDICTIONS, average=average))
    accuracy = load_metric("accuracy").compute(predictions=PREDICTIONS, references=REFERENCES)["accuracy"]
    assert accuracy == pytest.approx(sk_accuracy(REFERENCES, PREDICTIONS))


@pytest.mark.parametrize("average", ["macro", "weighted", "micro"])
def test_local_metrics_agree_with_scikit_learn_on_three_classes(average):
    predictions, references = THREE_CLASS_PREDICTIONS, THREE_CLASS_REFERENCES
    for name, reference in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        ours = load_metric(name).compute(predictions=predictions, references=references, average=average)[name]
        assert ours == pytest.approx(reference(references, predictions, average=average))
        some = load_metric(name).compute(predictions=predictions, references=references, average=average, labels=[0, 2])
        assert some[name] == pytest.approx(reference(references, predictions, average=average, labels=[0, 2]))
    assert macro_f1_score(predictions, references) == pytest.approx(f1_score(references, predictions, average="macro"))


def test_binary_average_on_three_classes_is_an_error_as_in_scikit_learn():
    predictions, references = THREE_CLASS_PREDICTIONS, THREE_CLASS_REFERENCES
    with pytest.raises(ValueError):
        f1_score(references, predictions, average="binary")
    for name in ("precision", "recall", "f1"):
        with pytest.raises(ValueError, match=r"average='binary'.* 3 classes \[0, 1, 2\].*average='macro'"):
            load_metric(name).compute(predictions=predictions, references=references)  # "binary" is the default
    with pytest.raises(ValueError, match="pos_label=2 is not one of the classes"):
        load_metric("f1").compute(predictions=[0, 1, 1], references=[0, 1, 0], pos_label=2)


def test_the_fast_numpy_scores_equal_scikit_learns():
    rng = np.random.default_rng(0)
    for num_classes, size in [(2, 7), (3, 50), (5, 200)]:
        predictions, references = rng.integers(0, num_classes, size), rng.integers(0, num_classes, size)
        assert accuracy_score(predictions, references) == pytest.approx(sk_accuracy(references, predictions))
        assert macro_f1_score(predictions, references) == pytest.approx(f1_score(references, predictions, average="macro"))
    with pytest.raises(ValueError, match="one predicted class id per reference"):
        accuracy_score([0, 1], [0, 1, 1])


@pytest.mark.parametrize("name", LOCAL_METRICS)
def test_the_example_in_each_metric_description_runs(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples load the modules by their path in the repository
    description = load_metric(name).inputs_description
    example = doctest.DocTestParser().get_doctest(description, {"evaluate": evaluate}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(example)
    assert example.examples and runner.summarize(verbose=False).failed == 0


def test_metrics_accumulate_batches_like_evaluate_metrics_do():
    metric = load_metric("f1")
    for start in range(0, 300, 64):
        metric.add_batch(predictions=PREDICTIONS[start : start + 64], references=REFERENCES[start : start + 64])
    assert metric.compute(average="macro")["f1"] == pytest.approx(f1_score(REFERENCES, PREDICTIONS, average="macro"))


def test_zero_division_counts_as_zero():
    assert load_metric("precision").compute(predictions=[0, 0], references=[1, 0])["precision"] == 0.0


def test_classification_metrics_and_fast_versions_agree():
    scores = classification_metrics(PREDICTIONS, REFERENCES)
    assert set(scores) == {"accuracy", "precision", "recall", "f1"}
    assert scores["f1"] == pytest.approx(macro_f1_score(PREDICTIONS, REFERENCES))
    assert scores["accuracy"] == pytest.approx(accuracy_score(PREDICTIONS, REFERENCES))


def test_bootstrap_interval_brackets_the_value_and_shrinks_with_more_data():
    value, low, high = bootstrap_interval(accuracy_score, PREDICTIONS, REFERENCES, seed=1)
    assert low < value < high and 0.05 < high - low < 0.15
    assert bootstrap_interval(accuracy_score, PREDICTIONS, REFERENCES, seed=1) == (value, low, high)
    big_p, big_r = np.tile(PREDICTIONS, 10), np.tile(REFERENCES, 10)
    _, big_low, big_high = bootstrap_interval(accuracy_score, big_p, big_r, seed=1)
    assert big_high - big_low < (high - low) / 2


def test_mean_difference_is_the_paired_bootstrap_of_per_item_scores():
    rng = np.random.default_rng(3)
    a, b = rng.random(50) < 0.7, rng.random(50) < 0.5
    expected = paired_bootstrap_difference(lambda values, _: float(np.mean(values)), a.astype(float), b.astype(float),
                                           np.zeros(50), seed=4)  # fmt: skip
    assert mean_difference(a, b, seed=4) == expected
    assert expected[0] == pytest.approx(a.mean() - b.mean())


def test_paired_bootstrap_of_a_difference_is_narrower_than_two_independent_intervals():
    better = np.where(rng.random(300) < 0.5, REFERENCES, PREDICTIONS)  # fixes about half of the mistakes
    difference, low, high = paired_bootstrap_difference(accuracy_score, better, PREDICTIONS, REFERENCES, seed=3)
    assert difference == pytest.approx(accuracy_score(better, REFERENCES) - accuracy_score(PREDICTIONS, REFERENCES))
    assert 0 < low < difference < high
    _, low_a, high_a = bootstrap_interval(accuracy_score, better, REFERENCES, seed=3)
    _, low_b, high_b = bootstrap_interval(accuracy_score, PREDICTIONS, REFERENCES, seed=3)
    # independent errors would add in quadrature; pairing removes the shared part
    assert high - low < 0.8 * np.hypot(high_a - low_a, high_b - low_b)
    same = paired_bootstrap_difference(macro_f1_score, PREDICTIONS, PREDICTIONS, REFERENCES)
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap_difference(accuracy_score, PREDICTIONS[:10], PREDICTIONS, REFERENCES)


def test_predict_runs_in_eval_mode_and_restores_train_mode():
    model = tiny_classifier(dropout=0.5)
    model.train()
    loader = tiny_loader(count=20, batch_size=8, shuffle=False)
    first, labels, loss = predict(model, loader)
    second, _, _ = predict(model, loader)
    assert np.array_equal(first, second), "dropout must be off while predicting"
    assert model.training and first.shape == (20, 2) and len(labels) == 20 and loss > 0
    metrics = evaluate_classifier(model, loader)
    assert metrics["accuracy"] == pytest.approx(float((first.argmax(-1) == labels).mean()))


def test_bootstrap_results_are_the_same_as_before_the_shared_helper():
    """Values computed with the two separate implementations this module used to have."""
    assert bootstrap_interval(accuracy_score, PREDICTIONS, REFERENCES, seed=1) == (
        0.7733333333333333, 0.7266666666666667, 0.82,
    )  # fmt: skip
    interval = bootstrap_interval(macro_f1_score, PREDICTIONS, REFERENCES, num_resamples=200, confidence=0.9, seed=2)
    assert interval == pytest.approx((0.7723214285714286, 0.7296271340597872, 0.8084691453933885), abs=1e-12)
    better = np.where(np.random.default_rng(5).random(300) < 0.5, REFERENCES, PREDICTIONS)
    difference = paired_bootstrap_difference(macro_f1_score, better, PREDICTIONS, REFERENCES, num_resamples=200, seed=4)
    assert difference == pytest.approx((0.12053571428571419, 0.0835780045098996, 0.1618141685851077), abs=1e-12)


def test_bootstrap_checks_its_arguments():
    with pytest.raises(ValueError, match="between 0 and 1"):
        bootstrap_interval(accuracy_score, PREDICTIONS, REFERENCES, confidence=95)
    with pytest.raises(ValueError, match="num_resamples must be at least 1"):
        paired_bootstrap_difference(accuracy_score, PREDICTIONS, PREDICTIONS, REFERENCES, num_resamples=0)
    with pytest.raises(ValueError, match="one per example"):
        bootstrap_interval(accuracy_score, PREDICTIONS[:10], REFERENCES)
    with pytest.raises(ValueError, match="no examples"):
        bootstrap_interval(accuracy_score, [], [])


def test_predict_restores_the_train_mode_even_when_the_model_fails():
    model = tiny_classifier(dropout=0.5).train()
    out_of_vocabulary = [{"input_ids": torch.tensor([[1, 2, 3]])}, {"input_ids": torch.tensor([[1, 2, 10_000]])}]
    with pytest.raises(IndexError):
        predict(model, out_of_vocabulary)
    assert model.training


# ---------------------------------------------------------------------- calibration


def test_expected_calibration_error_by_hand():
    # confidences 0.55 (one of two right), 0.95 (both right), 0.75 (wrong), in 10 bins:
    # 2/5 * |0.5 - 0.55| + 2/5 * |1 - 0.95| + 1/5 * |0 - 0.75| = 0.19
    probabilities = np.array([[0.55, 0.45], [0.45, 0.55], [0.95, 0.05], [0.05, 0.95], [0.75, 0.25]])
    labels = [0, 0, 0, 1, 1]
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.19)
    bins = reliability_bins(probabilities, labels)
    assert isinstance(bins, ReliabilityBins) and len(bins.edges) == 11
    assert bins.count.tolist() == [0, 0, 0, 0, 0, 2, 0, 1, 0, 2]
    assert bins.confidence[[5, 7, 9]] == pytest.approx([0.55, 0.75, 0.95])
    assert bins.accuracy[[5, 7, 9]].tolist() == [0.5, 0.0, 1.0]
    assert np.isnan(bins.accuracy[0]) and np.isnan(bins.confidence[0])


def test_reliability_bins_include_their_upper_edge():
    # bin m is (edges[m], edges[m + 1]]: a confidence of exactly 0.3 is in (0.2, 0.3], 1.0 in the last bin
    probabilities = np.array([[0.3, 0.3, 0.2, 0.2], [1.0, 0.0, 0.0, 0.0]])
    assert reliability_bins(probabilities, [0, 0]).count.tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 1]


def test_calibrated_predictions_have_a_small_error_and_overconfident_ones_a_large_one():
    generator = np.random.default_rng(0)
    confidence = generator.uniform(0.5, 1.0, 20_000)
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    calibrated = np.where(generator.random(20_000) < confidence, 0, 1)
    overconfident = np.where(generator.random(20_000) < confidence - 0.2, 0, 1)
    assert expected_calibration_error(probabilities, calibrated) < 0.02
    assert expected_calibration_error(probabilities, overconfident) == pytest.approx(0.2, abs=0.02)


def test_calibration_inputs_are_checked():
    logits = np.array([[2.0, -1.0], [0.5, 0.1]])
    with pytest.raises(ValueError, match="softmax"):
        expected_calibration_error(logits, [0, 1])
    with pytest.raises(ValueError, match="one label per example"):
        reliability_bins(softmax(logits, axis=1), [0])
    with pytest.raises(ValueError, match="class ids from 0 to 1"):
        reliability_bins(softmax(logits, axis=1), [0, 2])
    with pytest.raises(ValueError, match="a column per class"):
        fit_temperature(np.array([0.3, 0.7]), [1])
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.array([[np.nan, 0.0]]), [0])


def test_temperature_scaling_recovers_the_temperature_of_overconfident_logits():
    generator = np.random.default_rng(0)
    true_logits = generator.normal(0.0, 2.0, size=(5000, 3))
    labels = np.array([generator.choice(3, p=p) for p in softmax(true_logits, axis=1)])
    overconfident = 2.5 * true_logits
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(2.5, abs=0.15)
    assert fit_temperature(overconfident, labels) == temperature  # deterministic

    def nll(t):
        return -np.mean(log_softmax(overconfident / t, axis=1)[np.arange(len(labels)), labels])

    assert nll(temperature) <= min(nll(temperature * 1.05), nll(temperature / 1.05))
    before = expected_calibration_error(softmax(overconfident, axis=1), labels)
    after = expected_calibration_error(softmax(overconfident / temperature, axis=1), labels)
    assert after < before / 3


# -------------------------------------------------------------- prompting baselines


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    return load_tokenizer("smollm2")


def test_prompt_scores_equal_one_full_forward_pass_per_prompt(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    model = tiny_causal_lm()
    model.resize_token_embeddings(len(tokenizer))
    prefix = "Review: great fun\nSentiment: positive\n\n"
    texts = ["A dull film.", "One of the best films of the year, with a superb cast.", "Meh."]
    words = [" negative", " positive"]
    model.train()
    scores = score_label_words(model, tokenizer, prefix, texts, words, batch_size=2)
    assert model.training and scores.shape == (3, 2)
    word_ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    # the prefix and the text are tokenized separately, then joined
    prompts = [
        tokenizer(prefix, add_special_tokens=False)["input_ids"]
        + tokenizer(f"Review: {text}\nSentiment:", add_special_tokens=False)["input_ids"]
        for text in texts
    ]
    model.eval()
    for row, prompt in enumerate(prompts):
        with torch.no_grad():
            expected = torch.log_softmax(model(torch.tensor([prompt])).logits[0, -1], -1)[word_ids]
        np.testing.assert_allclose(scores[row], expected.numpy(), atol=1e-5)
    # the token-id form (for prompts rendered with a chat template) is the same computation
    assert first_token_ids(tokenizer, words) == word_ids
    by_ids = next_token_logprobs(model, prompts, word_ids, pad_token_id=tokenizer.pad_token_id, batch_size=2)
    np.testing.assert_array_equal(by_ids, scores)
    assert score_label_words(model, tokenizer, "", texts[:1], words).shape == (1, 2)
    with pytest.raises(ValueError, match="same token"):
        score_label_words(model, tokenizer, prefix, texts, [" positive", " positive"])


# ------------------------------------------------------------------ the test command


def test_the_test_command_runs_the_doctests_in_utils():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "utils" in options["testpaths"]
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "utils/metrics/_classification.py"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "utils/metrics/_classification.py::utils.metrics._classification.accuracy" in collected.stdout, (
        collected.stdout + collected.stderr
    )

"""Metrics, bootstrap intervals, prediction helpers and the prompting baseline."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score as sk_accuracy
from sklearn.metrics import f1_score, precision_score, recall_score
from tiny import tiny_classifier, tiny_loader
from transformers import LlamaConfig, LlamaForCausalLM

from utils.evaluation import (
    LOCAL_METRICS,
    accuracy_score,
    bootstrap_interval,
    classification_metrics,
    evaluate_classifier,
    load_metric,
    macro_f1_score,
    paired_bootstrap_difference,
    predict,
    score_label_words,
)
from utils.models import load_tokenizer

rng = np.random.default_rng(0)
PREDICTIONS = rng.integers(0, 2, 300)
REFERENCES = np.where(rng.random(300) < 0.8, PREDICTIONS, 1 - PREDICTIONS)


def test_the_course_ships_its_metrics_locally():
    assert set(LOCAL_METRICS) >= {"accuracy", "precision", "recall", "f1"}
    with pytest.raises(ValueError, match="ships accuracy, f1, precision, recall"):
        load_metric("bleu")


@pytest.mark.parametrize("average", ["binary", "macro", "weighted", "micro"])
def test_local_metrics_agree_with_scikit_learn(average):
    for name, reference in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        ours = load_metric(name).compute(predictions=PREDICTIONS, references=REFERENCES, average=average)[name]
        assert ours == pytest.approx(reference(REFERENCES, PREDICTIONS, average=average))
    accuracy = load_metric("accuracy").compute(predictions=PREDICTIONS, references=REFERENCES)["accuracy"]
    assert accuracy == pytest.approx(sk_accuracy(REFERENCES, PREDICTIONS))


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


def test_prompt_scores_with_a_cached_prefix_equal_a_full_forward_pass():
    tokenizer = load_tokenizer("smollm2")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    prefix = "Review: great fun\nSentiment: positive\n\n"
    texts = ["A dull film.", "One of the best films of the year, with a superb cast.", "Meh."]
    words = [" negative", " positive"]
    scores = score_label_words(model, tokenizer, prefix, texts, words, batch_size=2)
    word_ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    for row, text in enumerate(texts):
        # the prefix and the text are tokenized separately, then joined
        ids = [tokenizer(part, add_special_tokens=False)["input_ids"] for part in (prefix, f"Review: {text}\nSentiment:")]
        ids = torch.tensor([ids[0] + ids[1]])
        with torch.no_grad():
            expected = torch.log_softmax(model(ids).logits[0, -1], -1)[word_ids]
        np.testing.assert_allclose(scores[row], expected.numpy(), atol=1e-4)
    zero_shot = score_label_words(model, tokenizer, "", texts[:1], words)
    assert zero_shot.shape == (1, 2)
    with pytest.raises(ValueError, match="same token"):
        score_label_words(model, tokenizer, prefix, texts, [" positive", " positive"])

"""Evaluating classifiers: predictions, metrics, bootstrap intervals, and prompting baselines.

Metrics come from the course's local ``evaluate`` modules in ``utils/metrics/``
(``evaluate.load("accuracy")`` would fetch a script from the Hub and fails offline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import evaluate
import numpy as np
import torch

from utils.training import move_to_device

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
LOCAL_METRICS = tuple(sorted(p.stem for p in METRICS_DIR.glob("*.py")))


def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load one of the course's local metrics: accuracy, precision, recall or f1."""
    if name not in LOCAL_METRICS:
        raise ValueError(f"Unknown metric {name!r}; the course ships {', '.join(LOCAL_METRICS)}.")
    return evaluate.load(str(METRICS_DIR / f"{name}.py"))


def classification_metrics(
    predictions: Sequence[int], references: Sequence[int], average: str = "macro"
) -> dict[str, float]:
    """Accuracy plus precision, recall and F1 (macro-averaged over classes by default)."""
    scores = load_metric("accuracy").compute(predictions=predictions, references=references)
    for name in ("precision", "recall", "f1"):
        scores |= load_metric(name).compute(predictions=predictions, references=references, average=average)
    return scores


@torch.no_grad()
def predict(model: torch.nn.Module, loader: torch.utils.data.DataLoader) -> tuple[np.ndarray, np.ndarray, float]:
    """Run a classifier over a loader in eval mode.

    Returns ``(logits, labels, mean_loss)``: logits as float32 (n, num_classes),
    labels (n,) (empty if the batches have no labels) and the mean loss per example
    (NaN without labels). Dropout is off during the pass; the model's previous
    train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    all_logits, all_labels, loss_sum, count = [], [], 0.0, 0
    for batch in loader:
        batch = move_to_device(batch, device)
        output = model(**batch)
        all_logits.append(output.logits.float().cpu())
        if "labels" in batch:
            size = batch["labels"].shape[0]
            all_labels.append(batch["labels"].cpu())
            loss_sum += float(output.loss) * size
            count += size
    model.train(was_training)
    logits = torch.cat(all_logits).numpy()
    labels = torch.cat(all_labels).numpy() if all_labels else np.array([], dtype=np.int64)
    return logits, labels, (loss_sum / count if count else float("nan"))


def evaluate_classifier(model: torch.nn.Module, loader: torch.utils.data.DataLoader) -> dict[str, float]:
    """Mean loss and accuracy of a classifier on a labelled loader (for ``train(eval_fn=...)``)."""
    logits, labels, loss = predict(model, loader)
    return {"loss": loss, "accuracy": float((logits.argmax(-1) == labels).mean())}


def bootstrap_interval(
    metric: Callable[[np.ndarray, np.ndarray], float],
    predictions: Sequence[int],
    references: Sequence[int],
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of ``metric(predictions, references)``.

    Resamples the test examples with replacement ``num_resamples`` times and takes the
    middle ``confidence`` share of the metric's values (Efron & Tibshirani 1993).
    Returns ``(value on the full set, lower, upper)``.
    """
    predictions, references = np.asarray(predictions), np.asarray(references)
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(references), size=(num_resamples, len(references)))
    values = np.array([metric(predictions[i], references[i]) for i in indices])
    tail = (1 - confidence) / 2 * 100
    lower, upper = np.percentile(values, [tail, 100 - tail])
    return float(metric(predictions, references)), float(lower), float(upper)


def paired_bootstrap_difference(
    metric: Callable[[np.ndarray, np.ndarray], float],
    predictions_a: Sequence[int],
    predictions_b: Sequence[int],
    references: Sequence[int],
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap interval of ``metric(a) - metric(b)`` for two systems on the same examples.

    Each resample draws the same examples for both systems (a paired bootstrap), so the
    difficulty of the drawn examples cancels out and the interval of the difference is
    narrower than two separate intervals, treated as independent, would suggest. If the interval excludes 0,
    the difference is unlikely to be an accident of which examples the test set holds.
    Returns ``(difference on the full set, lower, upper)``.
    """
    predictions_a, predictions_b = np.asarray(predictions_a), np.asarray(predictions_b)
    references = np.asarray(references)
    if not len(predictions_a) == len(predictions_b) == len(references):
        raise ValueError(
            f"Both systems must be scored on the same examples: got {len(predictions_a)} and "
            f"{len(predictions_b)} predictions for {len(references)} references."
        )
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(references), size=(num_resamples, len(references)))
    values = np.array([metric(predictions_a[i], references[i]) - metric(predictions_b[i], references[i]) for i in indices])
    tail = (1 - confidence) / 2 * 100
    lower, upper = np.percentile(values, [tail, 100 - tail])
    difference = metric(predictions_a, references) - metric(predictions_b, references)
    return float(difference), float(lower), float(upper)


def accuracy_score(predictions: np.ndarray, references: np.ndarray) -> float:
    """Fraction correct; a fast NumPy version for bootstrap loops."""
    return float(np.mean(np.asarray(predictions) == np.asarray(references)))


def macro_f1_score(predictions: np.ndarray, references: np.ndarray) -> float:
    """Macro-averaged F1; a fast NumPy version for bootstrap loops (same result as the f1 module)."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    classes = np.union1d(predictions, references)
    scores = []
    for c in classes:
        true_pos = np.sum((predictions == c) & (references == c))
        denominator = np.sum(predictions == c) + np.sum(references == c)
        scores.append(2 * true_pos / denominator if denominator else 0.0)
    return float(np.mean(scores))


# -------------------------------------------------------------- prompting baselines


@torch.no_grad()
def score_label_words(
    model: torch.nn.Module,
    tokenizer,
    prompt_prefix: str,
    texts: Sequence[str],
    label_words: Sequence[str],
    template: str = "Review: {text}\nSentiment:",
    batch_size: int = 32,
) -> np.ndarray:
    """Prompt a causal LM to classify texts by its next-token scores for each label word.

    Each text becomes ``prompt_prefix + template.format(text=...)`` (the two parts are
    tokenized separately, then joined) and the model's
    next-token log-probabilities for the first token of each label word (e.g.
    " negative", " positive") are returned, shape (len(texts), len(label_words)).
    The shared prefix (instructions and few-shot examples) is run once and its
    key/value cache reused for every batch, which makes few-shot prompting far
    cheaper; texts are processed shortest first to waste little on padding.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    word_ids = [tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in label_words]
    if len(set(word_ids)) != len(word_ids):
        raise ValueError(f"The label words {list(label_words)} start with the same token; choose distinct words.")
    prefix_ids = tokenizer(prompt_prefix, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
    body, head = model.base_model, model.get_output_embeddings()  # transformer layers, then the LM head
    prefix_cache = body(input_ids=prefix_ids, use_cache=True).cache if prefix_ids.shape[1] else None
    encoded = [tokenizer(template.format(text=t), add_special_tokens=False)["input_ids"] for t in texts]
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    scores = np.zeros((len(texts), len(label_words)), dtype=np.float32)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(texts), batch_size):
        chosen = order[start : start + batch_size]
        longest = max(len(encoded[i]) for i in chosen)
        input_ids = torch.full((len(chosen), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chosen), longest), dtype=torch.long)
        for row, i in enumerate(chosen):  # right padding: the prefix stays contiguous
            input_ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[row, : len(encoded[i])] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        kwargs = {}
        if prefix_cache is not None:
            cache = _copy_cache(prefix_cache)
            cache.batch_repeat_interleave(len(chosen))
            mask = torch.cat([torch.ones((len(chosen), prefix_ids.shape[1]), dtype=torch.long, device=device), mask], 1)
            kwargs["cache"] = cache
        hidden = body(input_ids=input_ids, attention_mask=mask, use_cache=prefix_cache is not None, **kwargs).last_hidden_state
        last = (mask.sum(1) - 1 - (prefix_ids.shape[1] if prefix_cache is not None else 0)).clamp(min=0)
        logits = head(hidden[torch.arange(len(chosen), device=device), last]).float()
        scores[chosen] = torch.log_softmax(logits, dim=-1)[:, word_ids].cpu().numpy()
    model.train(was_training)
    return scores


def _copy_cache(cache):
    """A deep copy of a key/value cache, so the prefix cache survives each batch."""
    import copy

    return copy.deepcopy(cache)


# ------------------------------------------------------------- reporting many runs


def expected_max_score(scores: Sequence[float], num_trials: int | Sequence[int]) -> float | np.ndarray:
    """Expected best score of ``num_trials`` runs drawn at random from the runs you made.

    ``scores`` are the validation scores of N finished runs (e.g. one per random seed).
    Treating them as the distribution of outcomes, the chance that the best of n
    independent draws (with replacement) is the i-th smallest score v_(i) is
    (i/N)^n - ((i-1)/N)^n, so the expectation is the sum of v_(i) times that chance
    (Dodge et al. 2019, "Show your work"). With n=1 it is the mean; as n grows it
    approaches the maximum. ``num_trials`` may be one number or a sequence of them.
    """
    values = np.sort(np.asarray(scores, dtype=float))
    if values.ndim != 1 or len(values) == 0:
        raise ValueError("scores must be a non-empty list of numbers")
    trials = np.atleast_1d(np.asarray(num_trials))
    if np.any(trials < 1):
        raise ValueError("num_trials must be at least 1")
    share_at_most = np.arange(1, len(values) + 1) / len(values)  # empirical CDF at each sorted score
    chance_best = share_at_most[None, :] ** trials[:, None] - (share_at_most - 1 / len(values))[None, :] ** trials[:, None]
    expected = chance_best @ values
    return float(expected[0]) if np.ndim(num_trials) == 0 else expected

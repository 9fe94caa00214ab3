"""Evaluating classifiers: predictions, metrics, bootstrap intervals, calibration, and prompting baselines.

Metrics come from the course's local ``evaluate`` modules in ``utils/metrics/``
(``evaluate.load("accuracy")`` would fetch a script from the Hub and fails offline).
The modules call scikit-learn; ``accuracy_score`` and ``macro_f1_score`` here are NumPy versions of
the same formulas (tested equal), fast enough for the thousands of calls of a bootstrap loop
(``python -m utils.benchmark --metrics`` measures both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import evaluate
import numpy as np
import torch

from utils.language_modeling import first_token_ids, next_token_logprobs
from utils.models import eval_mode
from utils.training import move_to_device

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
# Files starting with "_" are not metrics: __init__.py, and the implementation they share.
LOCAL_METRICS = tuple(sorted(p.stem for p in METRICS_DIR.glob("*.py") if not p.stem.startswith("_")))


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
def predict(
    model: torch.nn.Module, loader: torch.utils.data.DataLoader, accelerator=None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Run a classifier over a loader in eval mode.

    Returns ``(logits, labels, mean_loss)``: logits as float32 (n, num_classes),
    labels (n,) (empty if the batches have no labels) and the mean loss per example
    (NaN without labels). Dropout is off during the pass; the model's previous
    train/eval mode is restored afterwards, even if the pass fails.

    With ``accelerator`` (an ``accelerate.Accelerator`` that prepared the model and the
    labelled loader) every process scores its own shard, and ``gather_for_metrics`` collects
    all of them, dropping the copies that padded the last, uneven batches: exactly one
    prediction per example, in the loader's order, on every process. The mean loss is then
    the cross-entropy of the gathered logits.
    """
    all_logits, all_labels, loss_sum, count = [], [], 0.0, 0
    with eval_mode(model):
        device = next(model.parameters()).device
        for batch in loader:
            batch = move_to_device(batch, device)
            output = model(**batch)
            logits, labels = output.logits.float(), batch.get("labels")
            if accelerator is not None:
                logits, labels = accelerator.gather_for_metrics((logits, labels))
            elif labels is not None:
                loss_sum += float(output.loss) * labels.shape[0]
                count += labels.shape[0]
            all_logits.append(logits.cpu())
            if labels is not None:
                all_labels.append(labels.cpu())
    logits = torch.cat(all_logits)
    labels = torch.cat(all_labels) if all_labels else torch.empty(0, dtype=torch.long)
    if accelerator is not None and len(labels):
        loss_sum, count = float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum")), len(labels)
    return logits.numpy(), labels.numpy(), (loss_sum / count if count else float("nan"))


def evaluate_classifier(model: torch.nn.Module, loader: torch.utils.data.DataLoader, accelerator=None) -> dict[str, float]:
    """Mean loss and accuracy of a classifier on a labelled loader (for ``train(eval_fn=...)``);
    with ``accelerator``, over all processes' shards (see ``predict``)."""
    logits, labels, loss = predict(model, loader, accelerator)
    return {"loss": loss, "accuracy": float((logits.argmax(-1) == labels).mean())}


def _same_length(predictions: Sequence[int], references: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.shape != references.shape or predictions.ndim != 1 or len(references) == 0:
        raise ValueError(f"Give one predicted class id per reference, as flat lists: got shapes {predictions.shape} "
                         f"and {references.shape} (take logits.argmax(-1) first).")  # fmt: skip
    return predictions, references


def accuracy_score(predictions: np.ndarray, references: np.ndarray) -> float:
    """Fraction correct, in NumPy: fast enough to be called thousands of times in a bootstrap loop.

    >>> accuracy_score([0, 1, 1, 0], [0, 1, 0, 0])
    0.75
    """
    predictions, references = _same_length(predictions, references)
    return float(np.mean(predictions == references))


def macro_f1_score(predictions: np.ndarray, references: np.ndarray) -> float:
    """Macro-averaged F1 over the classes seen, in NumPy: scikit-learn's ``f1_score(average="macro")``
    (tested equal), about ten times faster on small inputs, which a bootstrap loop needs.

    >>> round(macro_f1_score([0, 1, 2, 2], [0, 1, 1, 2]), 4)
    0.7778
    """
    predictions, references = _same_length(predictions, references)
    classes = np.union1d(predictions, references)
    is_predicted, is_actual = predictions[:, None] == classes, references[:, None] == classes
    true_positives = (is_predicted & is_actual).sum(0)
    return float(np.mean(2 * true_positives / (is_predicted.sum(0) + is_actual.sum(0))))


# -------------------------------------------------------------- bootstrap intervals


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
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions for {len(references)} references: give one per example.")
    lower, upper = _percentile_bootstrap(
        lambda rows: metric(predictions[rows], references[rows]), len(references), num_resamples, confidence, seed
    )
    return float(metric(predictions, references)), lower, upper


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

    def difference(rows: np.ndarray | slice) -> float:
        return metric(predictions_a[rows], references[rows]) - metric(predictions_b[rows], references[rows])

    lower, upper = _percentile_bootstrap(difference, len(references), num_resamples, confidence, seed)
    return float(difference(slice(None))), lower, upper


def mean_difference(
    values_a: Sequence[float], values_b: Sequence[float], num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values_a`` minus mean of ``values_b``, per-item scores of two systems on the same items
    (1 for right, 0 for wrong, or any number), with a paired bootstrap interval; notebook 07 builds it.

    Returns ``(difference, lower, upper)``, ready for ``verdict``.

    >>> mean_difference([1, 1, 0, 1], [1, 1, 0, 1])
    (0.0, 0.0, 0.0)
    """
    values_a, values_b = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    return paired_bootstrap_difference(
        lambda values, _: float(np.mean(values)), values_a, values_b, np.zeros(len(values_a)), num_resamples, confidence, seed
    )


def _percentile_bootstrap(
    statistic: Callable[[np.ndarray], float], size: int, num_resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """The middle ``confidence`` share of ``statistic(rows)`` over ``num_resamples`` resamples,
    each ``size`` example indices drawn with replacement."""
    if size == 0:
        raise ValueError("There are no examples to resample.")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be at least 1, not {num_resamples}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence is a share between 0 and 1 (e.g. 0.95), not {confidence}.")
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, size, size=(num_resamples, size))
    values = np.array([statistic(rows) for rows in resamples])
    tail = (1 - confidence) / 2 * 100
    lower, upper = np.percentile(values, [tail, 100 - tail])
    return float(lower), float(upper)


VERDICT_PREFIX = "Verdict: "


def verdict(
    comparison: str,
    difference: float,
    lower: float,
    upper: float,
    *,
    above: str = "better",
    below: str = "worse",
    neither: str = "no detectable difference",
    digits: int = 3,
) -> str:
    """One line that states what an interval of a difference shows, for a notebook to print.

    ``above`` when the whole interval lies above 0, ``below`` when it lies below, ``neither``
    when it contains 0. The notebooks' summaries quote these lines, and a test checks that they do.

    >>> verdict("fine-tuned minus TF-IDF", 0.05, 0.031, 0.08)
    'Verdict: fine-tuned minus TF-IDF: +0.050 [+0.031, +0.080] -> better'
    >>> verdict("masked minus unmasked", -0.01, -0.05, 0.02, neither="no detectable difference at this size")
    'Verdict: masked minus unmasked: -0.010 [-0.050, +0.020] -> no detectable difference at this size'
    """
    if not lower <= upper:
        raise ValueError(f"The interval's lower end ({lower}) must not exceed its upper end ({upper}).")
    word = above if lower > 0 else below if upper < 0 else neither
    return f"{VERDICT_PREFIX}{comparison}: {difference:+.{digits}f} [{lower:+.{digits}f}, {upper:+.{digits}f}] -> {word}"


# ---------------------------------------------------------------------- calibration
# A classifier is calibrated when, of the predictions it makes with confidence p, a share p
# is right. Guo, Pleiss, Sun & Weinberger (2017), "On Calibration of Modern Neural Networks"
# (ICML), measure it with reliability diagrams and the expected calibration error over
# equal-width confidence bins, and fix it with temperature scaling: one scalar T divides
# the logits, chosen to minimise the negative log-likelihood on validation data.


@dataclass(frozen=True)
class ReliabilityBins:
    """Predictions grouped by confidence into equal-width bins, for a reliability diagram.

    ``edges`` has ``num_bins + 1`` boundaries from 0 to 1; bin m holds the predictions with
    confidence in (edges[m], edges[m + 1]]. ``confidence`` is each bin's mean top-class
    probability, ``accuracy`` its share of correct predictions (both NaN for an empty bin),
    ``count`` its number of predictions.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def reliability_bins(probabilities: np.ndarray, labels: Sequence[int], num_bins: int = 10) -> ReliabilityBins:
    """Group predictions by confidence (the top class's probability) into ``num_bins``
    equal-width bins and measure each bin's mean confidence and accuracy (Guo et al. 2017).

    ``probabilities`` has one row per example and one column per class (a softmax of the
    logits); the prediction is the most probable class.

    >>> bins = reliability_bins(np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]), [0, 1, 1], num_bins=5)
    >>> bins.count.tolist(), bins.confidence[-2:].tolist(), bins.accuracy[-2:].tolist()
    ([0, 0, 0, 2, 1], [0.75, 0.9], [0.5, 1.0])
    """
    probabilities, labels = _checked_probabilities(probabilities, labels)
    if num_bins < 1:
        raise ValueError(f"num_bins must be at least 1, not {num_bins}.")
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # bin m is (edges[m], edges[m + 1]]; a confidence of exactly 0 cannot occur (it is at least 1/classes)
    index = np.clip(np.digitize(confidence, edges, right=True) - 1, 0, num_bins - 1)
    count = np.bincount(index, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=num_bins) / count
        bin_accuracy = np.bincount(index, weights=correct, minlength=num_bins) / count
    return ReliabilityBins(edges=edges, confidence=mean_confidence, accuracy=bin_accuracy, count=count)


def expected_calibration_error(probabilities: np.ndarray, labels: Sequence[int], num_bins: int = 10) -> float:
    """Expected calibration error: the gap |accuracy - confidence| of each equal-width
    confidence bin, weighted by the bin's share of the examples (Guo et al. 2017).

    0 means perfectly calibrated on these bins; the result depends on ``num_bins``, so
    compare ECEs computed with the same number.

    Two predictions in the bin (0.6, 0.8] average confidence 0.75 and one is right (gap 0.25);
    one in (0.8, 1] has confidence 0.9 and is right (gap 0.1): 2/3 * 0.25 + 1/3 * 0.1 = 0.2.

    >>> probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    >>> round(expected_calibration_error(probabilities, [0, 1, 1], num_bins=5), 4)
    0.2
    """
    bins = reliability_bins(probabilities, labels, num_bins)
    filled = bins.count > 0
    gaps = np.abs(bins.accuracy[filled] - bins.confidence[filled])
    return float(np.sum(bins.count[filled] / bins.count.sum() * gaps))


def fit_temperature(logits: np.ndarray, labels: Sequence[int]) -> float:
    """Temperature scaling (Guo et al. 2017): the one T > 0 that minimises the mean negative
    log-likelihood of ``softmax(logits / T)`` on held-out (validation) data.

    T > 1 softens overconfident predictions, T < 1 sharpens underconfident ones; the
    predicted classes, hence accuracy, do not change. Fit T on validation logits, then
    apply it to test logits: ``scipy.special.softmax(test_logits / T, axis=1)``. The search
    is a bounded one-dimensional minimisation over log T in [log 0.01, log 100]
    (``scipy.optimize.minimize_scalar``), so the same logits always give the same T.

    Three of these four confident predictions are right; the fitted T brings their
    confidence down to 3/4 (T = 2 / ln 3):

    >>> logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    >>> round(fit_temperature(logits, [0, 1, 0, 0]), 3)
    1.82
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have one row per example and a column per class, not shape {logits.shape}.")
    labels = _checked_labels(labels, len(logits), logits.shape[1])
    if not np.isfinite(logits).all():
        raise ValueError("logits contain NaN or infinite values; check the model's outputs.")
    true_class = logits[np.arange(len(labels)), labels]

    def mean_nll(log_temperature: float) -> float:
        temperature = np.exp(log_temperature)
        return float(np.mean(logsumexp(logits / temperature, axis=1) - true_class / temperature))

    result = minimize_scalar(mean_nll, bounds=(np.log(0.01), np.log(100.0)), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def _checked_labels(labels: Sequence[int], num_examples: int, num_classes: int) -> np.ndarray:
    """Labels as an integer array with one class id in [0, num_classes) per example."""
    labels = np.asarray(labels)
    if labels.shape != (num_examples,):
        raise ValueError(f"Give one label per example: got labels of shape {labels.shape} for {num_examples} examples.")
    if num_examples == 0:
        raise ValueError("There are no examples.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"Labels must be class ids from 0 to {num_classes - 1}.")
    return labels


def _checked_probabilities(probabilities: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (one row per example, summing to 1) and their labels, checked."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise ValueError(
            f"probabilities must have one row per example and a column per class, not shape {probabilities.shape}."
        )
    if not np.all(probabilities >= 0) or not np.allclose(probabilities.sum(axis=1), 1, atol=1e-3):
        raise ValueError(
            "probabilities must be in [0, 1] with each row summing to 1; for logits, take "
            "scipy.special.softmax(logits, axis=1) first."
        )
    return probabilities, _checked_labels(labels, len(probabilities), probabilities.shape[1])


# -------------------------------------------------------------- prompting baselines


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
    tokenized separately, without special tokens, then joined) and the model's
    next-token log-probabilities for the first token of each label word (e.g.
    " negative", " positive") are returned, shape (len(texts), len(label_words)).
    The scoring is ``utils.language_modeling.next_token_logprobs``: the shared prefix
    (instructions and few-shot examples) is run once and its key/value cache reused for
    every batch, which makes few-shot prompting far cheaper, and texts are processed
    shortest first to waste little on padding. For prompts that are already token ids
    (e.g. rendered with a chat template by ``chat_prompt_ids``), call
    ``next_token_logprobs(model, prompts, first_token_ids(tokenizer, label_words), ...)``.
    """
    word_ids = first_token_ids(tokenizer, label_words)
    prefix_ids = tokenizer(prompt_prefix, add_special_tokens=False)["input_ids"]
    prompts = [prefix_ids + tokenizer(template.format(text=t), add_special_tokens=False)["input_ids"] for t in texts]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return next_token_logprobs(model, prompts, word_ids, pad_token_id=pad_id, batch_size=batch_size)


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


def seed_paired_interval(differences: Sequence[Sequence[float]], confidence: float = 0.95) -> tuple[float, float, float]:
    """Confidence interval of a mean difference between two recipes, paired by seed and by example.

    ``differences[s][i]`` is recipe A's score minus recipe B's on validation example i, both
    trained with seed s (e.g. the difference of two sentences' losses, or of two 0/1
    correctness values). The mean over seeds and examples has two sources of uncertainty:
    which seeds were run and which examples the validation set holds. Their standard errors
    are estimated from the spread of the seed means (``var / S``) and of the example means
    (``var / N``) and added in quadrature; each term also carries part of the seed-by-example
    noise, so the sum errs on the wide side. The interval uses Student's t with the
    Welch-Satterthwaite degrees of freedom of that sum: with few seeds and a seed term that
    dominates, that is about S - 1, as in a paired t-test over seeds.
    Returns ``(mean difference, lower, upper)``; half the width is the smallest mean
    difference this design can tell from zero. Given the scores themselves instead of
    differences, it is the interval of a recipe's mean score.

    >>> mean, lower, upper = seed_paired_interval([[0.1, 0.3], [0.2, 0.4]])
    >>> round(mean, 2), lower < mean < upper
    (0.25, True)
    """
    from scipy.stats import t as student_t

    values = np.asarray(differences, dtype=float)
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 2:
        raise ValueError(f"differences must be a seeds x examples table with at least 2 of each, not shape {values.shape}.")
    if not np.all(np.isfinite(values)):
        raise ValueError("differences must be finite numbers.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence is a share between 0 and 1 (e.g. 0.95), not {confidence}.")
    num_seeds, num_examples = values.shape
    seed_term = values.mean(axis=1).var(ddof=1) / num_seeds
    example_term = values.mean(axis=0).var(ddof=1) / num_examples
    standard_error = float(np.sqrt(seed_term + example_term))
    mean = float(values.mean())
    if standard_error == 0:
        return mean, mean, mean
    degrees = (seed_term + example_term) ** 2 / (seed_term**2 / (num_seeds - 1) + example_term**2 / (num_examples - 1))
    half_width = float(student_t.ppf((1 + confidence) / 2, degrees)) * standard_error
    return mean, mean - half_width, mean + half_width

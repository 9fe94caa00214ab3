"""Precision: of the examples predicted as a class, the fraction that truly are.

A local `evaluate` metric module, so that it loads without the Hugging Face Hub:
``evaluate.load("utils/metrics/precision.py")`` (or ``utils.evaluation.load_metric("precision")``).
"""

import datasets
import evaluate
import numpy as np

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    average (str): "binary" (the class pos_label only), "macro" (unweighted mean over
        classes), "weighted" (mean weighted by each class's number of references) or
        "micro" (from the summed counts of all classes).
    pos_label (int): the positive class when average="binary".
    labels (list of int): the classes to average over; by default every class seen.
Returns:
    precision (float): in [0, 1]; a class with no predicted example counts as 0.
Example:
    >>> metric = evaluate.load("utils/metrics/precision.py")
    >>> metric.compute(predictions=[0, 1, 1, 1], references=[0, 1, 0, 1])
    {'precision': 0.6666666666666666}
"""


def _per_class_counts(predictions, references, labels):
    """True positives, predicted positives and actual positives for each class."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    true_pos = np.array([np.sum((predictions == c) & (references == c)) for c in labels], dtype=float)
    predicted = np.array([np.sum(predictions == c) for c in labels], dtype=float)
    actual = np.array([np.sum(references == c) for c in labels], dtype=float)
    return true_pos, predicted, actual


def _ratio(numerator, denominator):
    """numerator / denominator, with 0 where the denominator is 0."""
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


class Precision(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Precision = TP / (TP + FP).",
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, average="binary", pos_label=1, labels=None):
        if average not in {"binary", "macro", "weighted", "micro"}:
            raise ValueError(f"average must be binary, macro, weighted or micro, not {average!r}")
        if average == "binary":
            labels = [pos_label]
        elif labels is None:
            labels = sorted(set(np.asarray(references).tolist()) | set(np.asarray(predictions).tolist()))
        true_pos, predicted, actual = _per_class_counts(predictions, references, labels)
        if average == "micro":
            true_pos, predicted, actual = true_pos.sum(), predicted.sum(), actual.sum()
        score = _ratio(true_pos, predicted)
        if average == "weighted":
            return {"precision": float(np.average(score, weights=actual)) if actual.sum() else 0.0}
        return {"precision": float(np.mean(score))}

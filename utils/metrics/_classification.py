"""The course's classification scores for its ``evaluate`` modules: scikit-learn's accuracy, precision,
recall and F1, behind checks whose messages say what to pass instead.

The ``evaluate`` modules next to this file import it with a relative import
(``from ._classification import ...``): ``evaluate.load(path)`` copies a module's relative
imports into its cache along with the module, so each module still loads on its own.

>>> scores = precision_recall_f1([0, 1, 1, 1], [0, 1, 0, 1])
>>> {name: round(value, 4) for name, value in scores.items()}
{'precision': 0.6667, 'recall': 1.0, 'f1': 0.8}
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

AVERAGES = ("binary", "macro", "weighted", "micro")


def label_features() -> datasets.Features:
    """The inputs every classification metric takes: one predicted and one true class id per example."""
    return datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")})


def scores_description(name: str, zero_rule: str, example: str) -> str:
    """The ``inputs_description`` of the precision, recall and F1 modules."""
    return f"""
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    average (str): "binary" (the class pos_label only; an error on data with more than two
        classes), "macro" (unweighted mean over classes), "weighted" (mean weighted by each
        class's number of references) or "micro" (from the summed counts of all classes).
    pos_label (int): the positive class when average="binary".
    labels (list of int): the classes to average over; by default every class seen.
Returns:
    {name} (float): in [0, 1]; {zero_rule} counts as 0.
Example:
    >>> metric = evaluate.load("utils/metrics/{name}.py")
    >>> metric.compute(predictions=[0, 1, 1, 1], references=[0, 1, 0, 1])
    {example}
"""


def _label_arrays(predictions: Sequence[int], references: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Both label sequences as 1-D arrays of the same, non-zero length."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.ndim != 1 or references.ndim != 1:
        raise ValueError(
            f"predictions and references must be flat lists of class ids, not arrays of shape "
            f"{predictions.shape} and {references.shape} (take logits.argmax(-1) first)."
        )
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions for {len(references)} references: give one per example.")
    if len(references) == 0:
        raise ValueError("There is nothing to score: predictions and references are empty.")
    return predictions, references


def accuracy(
    predictions: Sequence[int],
    references: Sequence[int],
    normalize: bool = True,
    sample_weight: Sequence[float] | None = None,
) -> float:
    """Fraction of predictions equal to the reference (the weighted count if ``normalize=False``).

    >>> accuracy([0, 1, 1], [0, 1, 0])
    0.6666666666666666
    """
    predictions, references = _label_arrays(predictions, references)
    return float(accuracy_score(references, predictions, normalize=normalize, sample_weight=sample_weight))


def _classes_to_score(
    predictions: np.ndarray, references: np.ndarray, average: str, pos_label: int, labels: Sequence[int] | None
) -> np.ndarray:
    """The classes whose scores are averaged, checked before scikit-learn is called, with messages that say
    what to pass instead."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}, not {average!r}.")
    present = np.union1d(predictions, references)
    if average != "binary":
        if labels is not None and len(labels) == 0:
            raise ValueError(
                "labels is empty: give the classes to average over, or leave it out to use every class seen."
            )
        return present if labels is None else np.asarray(labels)
    if len(present) > 2:
        raise ValueError(
            f"average='binary' scores one positive class, but these labels have {len(present)} classes "
            f"{present.tolist()}. Choose average='macro', 'weighted' or 'micro'."
        )
    if len(present) == 2 and pos_label not in present:
        raise ValueError(
            f"pos_label={pos_label!r} is not one of the classes {present.tolist()}; pass the positive class."
        )
    return np.asarray([pos_label])


def precision_recall_f1(
    predictions: Sequence[int],
    references: Sequence[int],
    average: str = "binary",
    pos_label: int = 1,
    labels: Sequence[int] | None = None,
) -> dict[str, float]:
    """Precision TP/(TP+FP), recall TP/(TP+FN) and F1 2TP/(2TP+FP+FN), averaged over classes.

    ``average`` and ``pos_label`` follow scikit-learn: "binary" scores the class ``pos_label``
    and is an error on data with more than two classes; "macro" is the plain mean over the
    classes, "weighted" weights each class by its number of references, "micro" sums the
    counts of all classes first. ``labels`` picks the classes to average over (default:
    every class among predictions and references).
    """
    predictions, references = _label_arrays(predictions, references)
    _classes_to_score(predictions, references, average, pos_label, labels)  # clear messages for bad arguments
    scores = precision_recall_fscore_support(references, predictions, average=average, pos_label=pos_label,
                                             labels=labels, zero_division=0)  # fmt: skip
    return {name: float(value) for name, value in zip(("precision", "recall", "f1"), scores)}

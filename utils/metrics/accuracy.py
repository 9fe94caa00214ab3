"""Accuracy: the fraction of predictions that equal the reference label.

A local `evaluate` metric module, so that it loads without the Hugging Face Hub:
``evaluate.load("utils/metrics/accuracy.py")`` (or ``utils.evaluation.load_metric("accuracy")``).
"""

import evaluate

from ._classification import accuracy, label_features

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    normalize (bool): if False, return the number of correct predictions instead of the fraction.
    sample_weight (list of float): optional weight per example.
Returns:
    accuracy (float): in [0, 1], or a count when normalize=False.
Example:
    >>> metric = evaluate.load("utils/metrics/accuracy.py")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy = (number of correct predictions) / (number of predictions).",
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=label_features(),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        return {"accuracy": accuracy(predictions, references, normalize, sample_weight)}

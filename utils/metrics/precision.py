"""Precision: of the examples predicted as a class, the fraction that truly are.

A local `evaluate` metric module, so that it loads without the Hugging Face Hub:
``evaluate.load("utils/metrics/precision.py")`` (or ``utils.evaluation.load_metric("precision")``).
"""

import evaluate

from ._classification import label_features, precision_recall_f1, scores_description


class Precision(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Precision = TP / (TP + FP).",
            citation="",
            inputs_description=scores_description(
                "precision", "a class with no predicted example", "{'precision': 0.6666666666666666}"
            ),
            features=label_features(),
        )

    def _compute(self, predictions, references, average="binary", pos_label=1, labels=None):
        return {"precision": precision_recall_f1(predictions, references, average, pos_label, labels)["precision"]}

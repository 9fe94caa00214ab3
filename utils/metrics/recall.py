"""Recall: of the examples that truly are a class, the fraction predicted as it.

A local `evaluate` metric module, so that it loads without the Hugging Face Hub:
``evaluate.load("utils/metrics/recall.py")`` (or ``utils.evaluation.load_metric("recall")``).
"""

import evaluate

from ._classification import label_features, precision_recall_f1, scores_description


class Recall(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Recall = TP / (TP + FN).",
            citation="",
            inputs_description=scores_description("recall", "a class with no reference example", "{'recall': 1.0}"),
            features=label_features(),
        )

    def _compute(self, predictions, references, average="binary", pos_label=1, labels=None):
        return {"recall": precision_recall_f1(predictions, references, average, pos_label, labels)["recall"]}

"""F1: the harmonic mean of precision and recall.

A local `evaluate` metric module, so that it loads without the Hugging Face Hub:
``evaluate.load("utils/metrics/f1.py")`` (or ``utils.evaluation.load_metric("f1")``).
"""

import evaluate

from ._classification import label_features, precision_recall_f1, scores_description


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 = 2 * precision * recall / (precision + recall) = 2 TP / (2 TP + FP + FN).",
            citation="",
            inputs_description=scores_description(
                "f1", "a class with no predicted or reference example", "{'f1': 0.8}"
            ),
            features=label_features(),
        )

    def _compute(self, predictions, references, average="binary", pos_label=1, labels=None):
        return {"f1": precision_recall_f1(predictions, references, average, pos_label, labels)["f1"]}

"""The course's local ``evaluate`` metric modules (accuracy, precision, recall, f1), each loaded
by path with ``evaluate.load`` (see ``utils.evaluation.load_metric``), and ``_classification``,
the implementation they share."""

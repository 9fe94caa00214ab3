"""The shared plots draw what they are given."""

import matplotlib.pyplot as plt
import numpy as np

from utils.evaluation import reliability_bins
from utils.plotting import (
    PERFECT_CALIBRATION_LABEL,
    moving_average,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_learning_rate,
    plot_losses,
    plot_metric,
    plot_reliability_diagram,
)
from utils.training_state import TrainingHistory

plt.switch_backend("Agg")  # draw off-screen


def test_moving_average_uses_shorter_windows_at_the_start():
    assert moving_average([1, 2, 3, 4], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([5.0], 10).tolist() == [5.0]


def test_history_plots_and_confusion_matrix():
    history = TrainingHistory(
        steps=[{"step": s, "loss": 1 / s, "learning_rate": 1e-3 * s} for s in range(1, 11)],
        evaluations=[{"step": 5, "loss": 0.3, "accuracy": 0.8}, {"step": 10, "loss": 0.2, "accuracy": 0.9}],
    )
    figure, axes = plt.subplots(1, 4)
    plot_losses(history, axes[0])
    plot_metric(history, "accuracy", axes[1])
    plot_learning_rate(history, axes[2])
    plot_confusion_matrix([0, 1, 1, 1], [0, 1, 0, 1], ["neg", "pos"], axes[3])
    assert len(axes[0].lines) == 3 and axes[1].lines[0].get_ydata().tolist() == [0.8, 0.9]
    assert [t.get_text() for t in axes[3].texts] == ["1", "0", "1", "2"]
    assert np.allclose(axes[2].lines[0].get_ydata(), np.arange(1, 11) * 1e-3)
    plt.close(figure)


def test_learning_curves_use_train_evaluations_when_present():
    history = TrainingHistory(
        steps=[{"step": s, "loss": 1 / s} for s in range(1, 5)],
        evaluations=[
            {"step": 2, "loss": 0.6, "accuracy": 0.7, "train_loss": 0.5, "train_accuracy": 0.8},
            {"step": 4, "loss": 0.7, "accuracy": 0.72, "train_loss": 0.2, "train_accuracy": 0.95},
        ],
    )
    figure, axes = plt.subplots(1, 2)
    plot_learning_curves(history, axes, label="run", color="C3")
    loss_lines, metric_lines = axes[0].lines, axes[1].lines
    assert [line.get_label() for line in loss_lines] == ["run: train", "run: validation"]
    assert loss_lines[0].get_ydata().tolist() == [0.5, 0.2] and metric_lines[0].get_ydata().tolist() == [0.8, 0.95]
    assert metric_lines[1].get_ydata().tolist() == [0.7, 0.72]
    assert all(line.get_color() == "C3" for line in loss_lines + metric_lines)
    plt.close(figure)


def test_learning_curves_fall_back_to_the_step_loss():
    history = TrainingHistory(
        steps=[{"step": s, "loss": float(s)} for s in range(1, 5)], evaluations=[{"step": 4, "loss": 0.3, "accuracy": 0.9}]
    )
    axes = plot_learning_curves(history, smooth=2)
    assert axes[0].lines[0].get_ydata().tolist() == [1.0, 1.5, 2.5, 3.5]
    assert [line.get_label() for line in axes[1].lines] == ["validation"]
    plt.close(axes[0].figure)


def test_reliability_diagram_draws_filled_bins_and_one_diagonal():
    probabilities = np.array([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.4, 0.6]])
    before = reliability_bins(probabilities, [0, 1, 1, 0], num_bins=5)
    after = reliability_bins(np.array([[0.7, 0.3], [0.6, 0.4], [0.45, 0.55], [0.5, 0.5]]), [0, 1, 1, 0], num_bins=5)
    figure, ax = plt.subplots()
    plot_reliability_diagram(ax, before, "before")
    plot_reliability_diagram(ax, after, "after temperature scaling")
    labels = [line.get_label() for line in ax.lines]
    assert labels == [PERFECT_CALIBRATION_LABEL, "before", "after temperature scaling"]
    model_line = ax.lines[1]
    filled = before.count > 0
    assert model_line.get_xdata().tolist() == before.confidence[filled].tolist()
    assert model_line.get_ydata().tolist() == before.accuracy[filled].tolist()
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
    plt.close(figure)

"""The figures the notebooks draw more than once: losses, learning curves, learning rates,
confusion matrices, reliability diagrams. Each function draws on a matplotlib Axes and returns it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from utils.training_state import TrainingHistory

if TYPE_CHECKING:
    from utils.evaluation import ReliabilityBins

PERFECT_CALIBRATION_LABEL = "perfectly calibrated"


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each point (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    starts = np.arange(1, len(values) + 1) - counts
    return (cumulative[1:] - cumulative[starts]) / counts


def plot_losses(history: TrainingHistory, ax: plt.Axes | None = None, smooth: int = 10, label: str = "") -> plt.Axes:
    """Training loss per step (raw, faint, and smoothed) and validation loss per evaluation."""
    ax = ax or plt.gca()
    steps, losses = history.column("step"), history.column("loss")
    prefix = f"{label} " if label else ""
    line = ax.plot(steps, losses, alpha=0.25)[0]
    ax.plot(steps, moving_average(losses, smooth), color=line.get_color(), label=f"{prefix}train (smoothed)")
    if history.evaluations and "loss" in history.evaluations[0]:
        ax.plot(history.column("step", True), history.column("loss", True), "o--", color=line.get_color(),
                label=f"{prefix}validation")  # fmt: skip
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    return ax


def plot_metric(history: TrainingHistory, metric: str = "accuracy", ax: plt.Axes | None = None, label: str = "") -> plt.Axes:
    """A validation metric at each evaluation."""
    ax = ax or plt.gca()
    ax.plot(history.column("step", True), history.column(metric, True), "o-", label=label or f"validation {metric}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(metric)
    ax.legend()
    return ax


def plot_learning_curves(
    history: TrainingHistory,
    axes: Sequence[plt.Axes] | None = None,
    label: str = "",
    color: str | None = None,
    metric: str = "accuracy",
    smooth: int = 10,
) -> Sequence[plt.Axes]:
    """Training and validation loss (first Axes) and ``metric`` (second Axes) against the step.

    Validation values come from ``history.evaluations`` (keys ``loss`` and ``metric``).
    Training values come from the same evaluations when ``eval_fn`` also measured the
    training data (keys ``train_loss`` and ``train_<metric>``, in eval mode, comparable to
    validation); otherwise the training loss is the smoothed per-step loss and no training
    metric is drawn. Training is a solid line, validation a dashed line with markers, both in
    one colour per run, so several runs can share the same two Axes.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    loss_ax, metric_ax = axes[0], axes[1]
    prefix = f"{label}: " if label else ""
    eval_steps = history.column("step", evaluations=True)
    has_train_evals = bool(history.evaluations) and "train_loss" in history.evaluations[0]
    if has_train_evals:
        line = loss_ax.plot(eval_steps, history.column("train_loss", True), "-", color=color, label=f"{prefix}train")[0]
    else:
        smoothed = moving_average(history.column("loss"), smooth)
        line = loss_ax.plot(history.column("step"), smoothed, "-", color=color, label=f"{prefix}train (smoothed)")[0]
    color = line.get_color()
    if history.evaluations and "loss" in history.evaluations[0]:
        loss_ax.plot(eval_steps, history.column("loss", True), "o--", color=color, label=f"{prefix}validation")
    if history.evaluations and f"train_{metric}" in history.evaluations[0]:
        metric_ax.plot(eval_steps, history.column(f"train_{metric}", True), "-", color=color, label=f"{prefix}train")
    if history.evaluations and metric in history.evaluations[0]:
        metric_ax.plot(eval_steps, history.column(metric, True), "o--", color=color, label=f"{prefix}validation")
    for ax, name in ((loss_ax, "loss"), (metric_ax, metric)):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(name)
        if ax.lines:
            ax.legend(fontsize="small")
    return axes


def plot_learning_rate(history: TrainingHistory, ax: plt.Axes | None = None) -> plt.Axes:
    """The learning rate used at each optimizer step (warmup, then decay)."""
    ax = ax or plt.gca()
    ax.plot(history.column("step"), history.column("learning_rate"))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    return ax


def plot_confusion_matrix(
    references: Sequence[int], predictions: Sequence[int], labels: Sequence[str], ax: plt.Axes | None = None
) -> plt.Axes:
    """Counts of (true label, predicted label) pairs, with the counts written in the cells."""
    ax = ax or plt.gca()
    size = len(labels)
    matrix = np.zeros((size, size), dtype=int)
    for truth, guess in zip(references, predictions):
        matrix[truth, guess] += 1
    ax.imshow(matrix, cmap="Blues")
    for row in range(size):
        for column in range(size):
            dark = matrix[row, column] > matrix.max() / 2
            ax.text(column, row, str(matrix[row, column]), ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(range(size), labels)
    ax.set_yticks(range(size), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return ax


def plot_reliability_diagram(ax: plt.Axes | None, bins: ReliabilityBins, label: str = "") -> plt.Axes:
    """A reliability diagram (Guo et al. 2017): accuracy against mean confidence in each
    confidence bin (``utils.evaluation.reliability_bins``), with the diagonal a perfectly
    calibrated model would follow.

    Points below the diagonal are overconfident, above it underconfident. Empty bins are
    left out. Call it again on the same Axes to compare models (e.g. before and after
    temperature scaling); the diagonal is drawn once.
    """
    ax = ax or plt.gca()
    if PERFECT_CALIBRATION_LABEL not in [line.get_label() for line in ax.lines]:
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label=PERFECT_CALIBRATION_LABEL)
    filled = np.asarray(bins.count) > 0
    ax.plot(np.asarray(bins.confidence)[filled], np.asarray(bins.accuracy)[filled], "o-", label=label or "model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence in bin")
    ax.set_ylabel("accuracy in bin")
    ax.legend()
    return ax

"""Where a training run stands and what happened in it: the counters a checkpoint restores, and the history."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoopState:
    """Where training stands: the counters a checkpoint needs to continue exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    bad_evals: int = 0  # evaluations in a row without improvement (early stopping)


@dataclass
class TrainingHistory:
    """What happened during training, ready for tables and plots.

    ``steps`` has one record per optimizer step (step, epoch, loss, learning_rate,
    grad_norm); ``evaluations`` one per evaluation (step, epoch and the metrics that
    ``eval_fn`` returned, e.g. loss and accuracy).
    """

    steps: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    examples_seen: int = 0
    train_seconds: float = 0.0  # time spent in training steps, without evaluation and checkpoints
    eval_seconds: float = 0.0  # time spent inside eval_fn
    total_seconds: float = 0.0
    best_step: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    resumed_from_step: int | None = None

    @property
    def examples_per_second(self) -> float:
        """Training throughput: examples processed per second of training steps."""
        return self.examples_seen / self.train_seconds if self.train_seconds else float("nan")

    def column(self, name: str, evaluations: bool = False) -> list:
        """One field of every step (or evaluation) record, e.g. ``history.column("loss")``."""
        records = self.evaluations if evaluations else self.steps
        return [record.get(name) for record in records]

    def to_dataframes(self):
        """The step and evaluation records as two pandas DataFrames."""
        import pandas as pd

        return pd.DataFrame(self.steps), pd.DataFrame(self.evaluations)

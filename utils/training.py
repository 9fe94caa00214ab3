"""The training loop built step by step in notebook 03, as one tested function.

Every optimizer step does, in this order: forward with labels (under autocast for
bf16/fp16), ``loss.backward()`` (scaled for fp16), gradient clipping,
``optimizer.step()``, ``scheduler.step()`` and ``optimizer.zero_grad()``. With
``grad_accum_steps=k`` the gradients of k batches are summed (each loss divided
by k) before one optimizer step.

Checkpoints hold the model, optimizer, scheduler, gradient scaler, the random
number generators and the position in the data, written atomically (a temporary
file, then a rename), so ``resume=True`` continues a killed run to bit-identical
weights (on the same hardware and thread count). A non-finite loss stops training
with ``TrainingDivergedError`` and leaves the last good checkpoint untouched.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from utils.environment import PRECISIONS, Precision, pick_precision, progress_bars_enabled

CHECKPOINT_FILE = "checkpoint.pt"
BEST_MODEL_FILE = "best_model.pt"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite. ``history`` holds what was logged until then."""

    def __init__(self, message: str, history: "TrainingHistory"):
        super().__init__(message)
        self.history = history


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


# ----------------------------------------------------------------- small pieces


def move_to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move every tensor of a batch to ``device``."""
    return {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}


def batch_size_of(batch: Mapping[str, torch.Tensor]) -> int:
    """Number of examples in a batch (its first tensor's first dimension)."""
    first = batch["input_ids"] if "input_ids" in batch else next(v for v in batch.values() if torch.is_tensor(v))
    return int(first.shape[0])


def weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups for AdamW: decay on weight matrices only.

    Biases and normalisation weights (LayerNorm, RMSNorm) are one-dimensional; decaying
    them towards zero only hurts, so they get ``weight_decay=0``. Frozen parameters
    (``requires_grad=False``) are left out.
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _loader_generators(loader) -> list[torch.Generator]:
    """The random generators that decide a DataLoader's order (sampler and loader)."""
    found = []
    for owner in (loader, getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def _rng_state() -> dict:
    """Every global random state a training step can touch."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``.

    A crash while writing leaves the previous file intact: the rename is atomic.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_checkpoint(checkpoint_dir: str | Path) -> dict | None:
    """Read the checkpoint in ``checkpoint_dir``, or return None if there is none.

    Checkpoints are pickles that this code wrote (they hold random states, not only
    tensors): load only checkpoints you made yourself.
    """
    path = Path(checkpoint_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def _resolve_precision(precision: str | Precision, device: torch.device) -> Precision:
    if isinstance(precision, Precision):
        return precision
    if precision == "auto":
        return pick_precision(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', not {precision!r}")
    chosen = PRECISIONS[precision]
    if chosen.name != "fp32" and device.type == "cpu":
        raise ValueError(f"{precision} autocast is for GPUs in this course; use precision='fp32' on CPU.")
    return chosen


# ------------------------------------------------------------------- the loop


def train(
    model: torch.nn.Module,
    train_loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    num_epochs: int | None = 1,
    max_steps: int | None = None,
    grad_accum_steps: int = 1,
    max_grad_norm: float | None = 1.0,
    precision: str | Precision = "fp32",
    eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    eval_every: int | None = None,
    eval_at_start: bool = False,
    early_stopping_metric: str | None = None,
    greater_is_better: bool = True,
    patience: int | None = None,
    restore_best: bool = True,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool | None = None,
    on_step: Callable[[int, TrainingHistory], None] | None = None,
) -> TrainingHistory:
    """Train ``model`` on batches from ``train_loader``; return a ``TrainingHistory``.

    The model must return ``.loss`` when called with a batch that includes labels (all
    transformers task models do). Batches are moved to the model's device.

    Length: ``num_epochs`` passes over the loader, cut short by ``max_steps``
    optimizer steps if given. One optimizer step consumes ``grad_accum_steps`` batches.

    Evaluation: ``eval_fn(model)`` returns a dict of metrics; it is called every
    ``eval_every`` optimizer steps (default: at the end of each epoch), at the end,
    and with ``eval_at_start`` once before the first step (logged as step 0).
    With ``early_stopping_metric`` and ``patience``, training stops after ``patience``
    evaluations without improvement, and (``restore_best``) the best weights are
    loaded back at the end.

    Checkpoints: with ``checkpoint_dir``, a checkpoint is written every
    ``checkpoint_every`` optimizer steps and at the end; ``resume=True`` continues
    from it. ``progress=None`` shows a progress bar unless ``environment.quiet()`` ran.
    """
    if grad_accum_steps < 1:
        raise ValueError("grad_accum_steps must be at least 1")
    if num_epochs is None and max_steps is None:
        raise ValueError("give num_epochs, max_steps, or both")
    if patience is not None and (early_stopping_metric is None or eval_fn is None):
        raise ValueError("early stopping needs eval_fn, early_stopping_metric and patience")
    if (resume or checkpoint_every) and checkpoint_dir is None:
        raise ValueError("resume and checkpoint_every need a checkpoint_dir")
    device = next(model.parameters()).device
    chosen = _resolve_precision(precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=chosen.needs_grad_scaler)
    batches_per_epoch = len(train_loader)
    steps_per_epoch = math.ceil(batches_per_epoch / grad_accum_steps)
    total_steps = steps_per_epoch * num_epochs if num_epochs is not None else max_steps
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    eval_every = eval_every or steps_per_epoch
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    history = TrainingHistory()
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "bad_evals": 0}
    best_state_dict = None
    epoch_start_rng = None  # random states when the current epoch's iterator was made
    generators = _loader_generators(train_loader)
    resumed = load_checkpoint(checkpoint_dir) if resume else None
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        if scheduler is not None and resumed["scheduler"] is not None:
            scheduler.load_state_dict(resumed["scheduler"])
        scaler.load_state_dict(resumed["scaler"])
        state = resumed["state"]
        history = resumed["history"]
        history.resumed_from_step = state["step"]
        if (checkpoint_dir / BEST_MODEL_FILE).exists():
            best_state_dict = torch.load(checkpoint_dir / BEST_MODEL_FILE, map_location="cpu", weights_only=True)

    def save_checkpoint() -> None:
        atomic_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict(),
                "state": dict(state),
                "history": history,
                "rng": _rng_state(),
                "epoch_start_rng": epoch_start_rng,
            },
            checkpoint_dir / CHECKPOINT_FILE,
        )

    def evaluate_now() -> bool:
        """Run eval_fn, log it, track the best weights; return True to stop early."""
        nonlocal best_state_dict
        was_training = model.training
        eval_started = time.perf_counter()
        metrics = eval_fn(model)
        history.eval_seconds += time.perf_counter() - eval_started
        model.train(was_training)
        record = {"step": state["step"], "epoch": round(state["step"] / steps_per_epoch, 4), **metrics}
        history.evaluations.append(record)
        if early_stopping_metric is None:
            return False
        if early_stopping_metric not in metrics:
            raise KeyError(f"eval_fn returned {sorted(metrics)}, not the early-stopping metric {early_stopping_metric!r}")
        value = float(metrics[early_stopping_metric])
        improved = history.best_metric is None or (
            value > history.best_metric if greater_is_better else value < history.best_metric
        )
        if improved:
            history.best_metric, history.best_step = value, state["step"]
            state["bad_evals"] = 0
            if restore_best:
                best_state_dict = clone_state_dict(model)
                if checkpoint_dir is not None:
                    atomic_save(best_state_dict, checkpoint_dir / BEST_MODEL_FILE)
        else:
            state["bad_evals"] += 1
        return patience is not None and state["bad_evals"] >= patience

    show_bar = progress_bars_enabled() if progress is None else progress
    bar = tqdm(total=total_steps, initial=state["step"], disable=not show_bar, desc="training", unit="step")
    start = time.perf_counter()
    model.train()
    optimizer.zero_grad(set_to_none=True)
    if eval_fn is not None and eval_at_start and state["step"] == 0 and not history.evaluations:
        evaluate_now()
    stop = state["step"] >= total_steps
    while not stop:
        # Build this epoch's iterator. On resume, rebuild it exactly as it was: same
        # shuffling state, then skip the batches that were already used.
        skip = state["batch_in_epoch"]
        if resumed is not None and skip > 0:
            _set_rng_state(resumed["epoch_start_rng"]["global"])
            for generator, saved in zip(generators, resumed["epoch_start_rng"]["loaders"]):
                generator.set_state(saved)
        epoch_start_rng = {"global": _rng_state(), "loaders": [g.get_state() for g in generators]}
        batches = iter(train_loader)
        for _ in range(skip):
            next(batches)
        if resumed is not None:
            _set_rng_state(resumed["rng"])
            resumed = None

        step_started = time.perf_counter()
        micro_losses, group_examples = [], 0
        for batch_index in range(skip, batches_per_epoch):
            batch = move_to_device(next(batches), device)
            group_start = (batch_index // grad_accum_steps) * grad_accum_steps
            group_size = min(grad_accum_steps, batches_per_epoch - group_start)
            with torch.autocast(device.type, dtype=chosen.autocast_dtype, enabled=chosen.autocast_dtype is not None):
                loss = model(**batch).loss
            if not torch.isfinite(loss):
                bar.close()
                raise TrainingDivergedError(_divergence_message(loss, state, checkpoint_dir), history)
            scaler.scale(loss / group_size).backward()
            micro_losses.append(loss.detach())
            group_examples += batch_size_of(batch)
            state["batch_in_epoch"] = batch_index + 1
            if batch_index + 1 - group_start < group_size:
                continue  # keep accumulating gradients

            grad_norm = None
            if max_grad_norm is not None:
                scaler.unscale_(optimizer)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
            learning_rate = optimizer.param_groups[0]["lr"]
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            state["step"] += 1
            history.examples_seen += group_examples
            history.steps.append(
                {
                    "step": state["step"],
                    "epoch": round(state["step"] / steps_per_epoch, 4),
                    "loss": float(torch.stack(micro_losses).mean()),
                    "learning_rate": learning_rate,
                    "grad_norm": grad_norm,
                }
            )
            micro_losses, group_examples = [], 0
            history.train_seconds += time.perf_counter() - step_started
            bar.update(1)
            bar.set_postfix(loss=f"{history.steps[-1]['loss']:.4f}")

            stop = state["step"] >= total_steps
            if eval_fn is not None and (state["step"] % eval_every == 0 or stop):
                stop = evaluate_now() or stop
                history.stopped_early = stop and state["step"] < total_steps
            if checkpoint_dir is not None and (
                stop or (checkpoint_every and state["step"] % checkpoint_every == 0)
            ):
                save_checkpoint()
            if on_step is not None:
                on_step(state["step"], history)
            if stop:
                break
            step_started = time.perf_counter()
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    bar.close()
    history.total_seconds += time.perf_counter() - start
    if restore_best and best_state_dict is not None:
        model.load_state_dict(best_state_dict)
    return history


def _divergence_message(loss: torch.Tensor, state: dict, checkpoint_dir: Path | None) -> str:
    where = f"at optimizer step {state['step'] + 1} (epoch {state['epoch'] + 1}, batch {state['batch_in_epoch'] + 1})"
    saved = load_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if saved is not None:
        kept = f"The last good checkpoint (step {saved['state']['step']}) is kept in {checkpoint_dir}; resume from it with resume=True."
    else:
        kept = "No checkpoint was saved (pass checkpoint_dir and checkpoint_every to keep one)."
    return (
        f"Training stopped: the loss became {loss.item()} {where}. {kept} "
        "Usual fixes: a lower learning rate, gradient clipping (max_grad_norm=1.0), a longer "
        "warmup, or bf16/fp32 instead of fp16; also check the batch for empty or broken inputs."
    )


def clone_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a model's weights, e.g. to compare before and after training."""
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}

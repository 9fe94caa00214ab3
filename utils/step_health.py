"""The safety check before every optimizer step: stop a diverging run before it damages the weights.

Training stops when the loss is NaN or infinite, when the gradient norm is (except in fp16, where
the gradient scaler skips such steps and lowers its scale: that is its job), or when the loss
exceeds ``explosion_factor`` times its usual size. A gradient norm beyond that bound is only
suspect: clipping limits the step and training goes on, but no checkpoint is taken around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.checkpoints import checkpoint_step

RECENT_STEPS = 20  # steps whose loss and gradient norm set the scale of "exploded"


@dataclass(frozen=True)
class StepHealth:
    """The check before an optimizer step: ``stop`` says why training must stop, ``suspect`` why
    the weights around this step must not be checkpointed; both None for a healthy step."""

    stop: str | None = None
    suspect: str | None = None


def usual_size(values: list) -> float | None:
    """The larger of the run's first value and the median of its last RECENT_STEPS values (finite ones)."""
    recent = [v for v in values[-RECENT_STEPS:] if v is not None and math.isfinite(v)]
    first = [v for v in values[:1] if v is not None and math.isfinite(v)]
    candidates = first + ([float(np.median(recent))] if recent else [])
    return max(candidates) if candidates else None


def _exploded(name: str, value: float | None, values: list, factor: float | None) -> str | None:
    scale = usual_size(values)
    if factor is None or value is None or not math.isfinite(value) or not scale or value <= factor * scale:
        return None
    return (
        f"the {name} jumped to {value:.4g}, more than {factor:g}x its usual size ({scale:.4g}: the larger of "
        f"the first step's and the median of the last {RECENT_STEPS})"
    )


def check_step(loss: float, grad_norm: float | None, history, explosion_factor: float | None = 10.0,
               scaler_skips_inf: bool = False) -> StepHealth:  # fmt: skip
    """Decide, before the optimizer step, whether the step is healthy.

    Stop when the loss is NaN or infinite, when the gradient norm is (unless
    ``scaler_skips_inf``: fp16's gradient scaler skips such steps and lowers its scale
    itself), or when the loss exceeds ``explosion_factor`` times its usual size: the
    larger of the first step's loss and the median of the last ``RECENT_STEPS`` in
    ``history`` (a ``TrainingHistory``). The first step anchors the scale, so a run whose
    loss has fallen far may still meet a hard batch, and a slowly diverging run cannot
    ratchet the scale up. A gradient norm beyond the same bound makes the step suspect.
    """
    if not math.isfinite(loss):
        return StepHealth(stop=f"the loss became {loss}")
    if grad_norm is not None and not math.isfinite(grad_norm) and not scaler_skips_inf:
        return StepHealth(stop=f"the gradient norm became {grad_norm}")
    stop = _exploded("loss", loss, history.column("loss"), explosion_factor)
    if stop is not None:
        return StepHealth(stop=stop)
    return StepHealth(suspect=_exploded("gradient norm", grad_norm, history.column("grad_norm"), explosion_factor))


def divergence_message(problem: str, step: int, epoch: int, batches: tuple[int, int], checkpoint_dir: Path | None) -> str:
    """What went wrong where (``batches``: the step's first and last batch of the epoch, from 1), what was kept,
    and what to try. Reads only ``latest.json`` of the checkpoints."""
    first, last = batches
    where = f"at optimizer step {step} (epoch {epoch + 1}, {f'batch {last}' if first == last else f'batches {first}-{last}'})"
    saved = checkpoint_step(checkpoint_dir) if checkpoint_dir is not None else None
    if saved is not None:
        kept = (
            f"The last good checkpoint (step {saved}) is kept in {checkpoint_dir}; resume from it with "
            "resume=True and an optimizer built with a lower learning rate (the rate you pass replaces the "
            "saved one; AdamW's moment estimates and the schedule's position are kept)."
        )
    elif checkpoint_dir is not None:
        kept = f"No healthy checkpoint was written in {checkpoint_dir} yet; start again with a lower learning rate."
    else:
        kept = "No checkpoint was saved (pass checkpoint_dir and checkpoint_every to keep one)."
    return (
        f"Training stopped before the step: {problem} {where}. {kept} "
        "Usual fixes: a lower learning rate, gradient clipping (max_grad_norm=1.0), a longer "
        "warmup, or bf16/fp32 instead of fp16; also check the batch for empty or broken inputs."
    )

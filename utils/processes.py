"""How the training loop's steps run: in one process (torch's autocast and GradScaler), or under an
``accelerate.Accelerator`` in one process or many (its autocast, scaler, gradient sync and checkpoints).

Both offer the same calls, so ``utils.training.train`` is one loop for both.
"""

from __future__ import annotations

import contextlib
import math
import pickle
from pathlib import Path

import torch

from utils.atomic_files import fsync_file
from utils.checkpoints import CHECKPOINT_FIX, TENSORS_FILE, CheckpointError, load_tensors, save_tensors
from utils.environment import PRECISIONS, Precision, pick_precision


def resolve_precision(precision: str | Precision, device: torch.device) -> Precision:
    """``precision`` as a Precision: 'auto' picks the device's best; bf16 and fp16 are refused on a CPU."""
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


class OneProcess:
    """One process: torch.autocast for bf16/fp16, a GradScaler for fp16."""

    num_processes, process_index, is_main = 1, 0, True

    def __init__(self, model: torch.nn.Module, precision: Precision):
        self.device = next(model.parameters()).device
        self.precision = precision
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision.needs_grad_scaler)
        self.scaler_skips_inf = precision.needs_grad_scaler

    def autocast(self):
        dtype = self.precision.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def no_sync(self, model):
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def clip_gradients(self, model, optimizer, max_norm: float | None) -> float:
        """Clip the gradients' total norm to ``max_norm`` (None: no clipping); return the norm before clipping."""
        self.scaler.unscale_(optimizer)  # a no-op without fp16
        if max_norm is not None:
            return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        gradients = [p.grad for p in model.parameters() if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(gradients)) if gradients else 0.0

    def optimizer_step(self, optimizer) -> None:
        self.scaler.step(optimizer)
        self.scaler.update()

    def across_processes(self, loss: torch.Tensor, examples: int) -> tuple[float, int]:
        return float(loss), examples

    def wait(self) -> None:
        pass

    def unwrap(self, model):
        return model

    def save(self, model, optimizer, folder: Path) -> None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": self.scaler.state_dict()}
        save_tensors(state, folder / TENSORS_FILE)

    def load(self, model, optimizer, folder: Path) -> None:
        state = load_tensors(folder / TENSORS_FILE)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])


class Accelerated:
    """Under an ``accelerate.Accelerator``: its autocast, scaler, gradient sync and checkpoints."""

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.device = accelerator.device
        self.num_processes = accelerator.num_processes
        self.process_index = accelerator.process_index
        self.is_main = accelerator.is_main_process
        self.scaler_skips_inf = accelerator.scaler is not None

    def autocast(self):
        return self.accelerator.autocast()

    def no_sync(self, model):
        return self.accelerator.no_sync(model)

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip_gradients(self, model, optimizer, max_norm: float | None) -> float | None:
        """Clip as ``OneProcess`` does. DDP has averaged the gradients already, so every process sees the same
        norm; under DeepSpeed clipping is its config's "gradient_clipping" and no norm comes back (None)."""
        norm = self.accelerator.clip_grad_norm_(model.parameters(), math.inf if max_norm is None else max_norm)
        return None if norm is None else float(norm)

    def optimizer_step(self, optimizer) -> None:
        optimizer.step()  # the prepared optimizer applies the gradient scaler

    def across_processes(self, loss: torch.Tensor, examples: int) -> tuple[float, int]:
        """The mean loss over every process's batches and the examples of all processes (one all-reduce)."""
        totals = torch.tensor([float(loss), float(examples)], dtype=torch.float64, device=self.device)
        totals = self.accelerator.reduce(totals, reduction="sum")
        return float(totals[0]) / self.num_processes, int(totals[1])

    def wait(self) -> None:
        self.accelerator.wait_for_everyone()

    def unwrap(self, model):
        return self.accelerator.unwrap_model(model)

    def save(self, model, optimizer, folder: Path) -> None:
        """``save_state`` in every process (sharded states need all of them), then the main process makes the
        files durable, once no process is still writing (a temporary file of another must not vanish under it)."""
        self.accelerator.save_state(str(folder))
        self.accelerator.wait_for_everyone()
        if self.is_main:
            for path in folder.iterdir():
                if path.is_file():
                    fsync_file(path)

    def load(self, model, optimizer, folder: Path) -> None:
        try:
            self.accelerator.load_state(str(folder))  # accelerate reads its files with weights_only=True
        except (pickle.UnpicklingError, RuntimeError, EOFError, FileNotFoundError) as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(f"The checkpoint in {folder} cannot be loaded ({first_line}). {CHECKPOINT_FIX}") from None


def _check_accelerator_settings(accelerator, precision: str | Precision, grad_accum_steps: int, keeps_best: bool) -> None:
    wanted = precision.name if isinstance(precision, Precision) else precision
    has = {"no": "fp32"}.get(str(accelerator.mixed_precision), str(accelerator.mixed_precision))
    if wanted not in ("auto", "fp32", has):
        raise ValueError(
            f"precision={wanted!r}, but the Accelerator runs {has}: with an Accelerator, set the precision there "
            "(Accelerator(mixed_precision=...) or accelerate launch --mixed_precision)."
        )
    kind = str(accelerator.distributed_type).rsplit(".", 1)[-1]
    if kind == "DEEPSPEED" and grad_accum_steps > 1:
        raise ValueError(
            "With DeepSpeed, accelerator.backward also steps the optimizer, so train() needs grad_accum_steps=1: "
            "raise the batch size per process, or the number of processes, instead."
        )
    if kind in ("FSDP", "DEEPSPEED") and keeps_best:
        raise ValueError(
            "restore_best keeps a full copy of the best weights, which train() does not do for sharded models "
            "(FSDP, DeepSpeed): pass restore_best=False and reload the best checkpoint yourself."
        )


def processes_for(model, config, accelerator) -> OneProcess | Accelerated:
    """How ``train`` runs ``model`` with ``config`` (a TrainingConfig): in one process, or under ``accelerator``."""
    if accelerator is None:
        return OneProcess(model, resolve_precision(config.precision, next(model.parameters()).device))
    keeps_best = config.restore_best and config.early_stopping_metric is not None
    _check_accelerator_settings(accelerator, config.precision, config.grad_accum_steps, keeps_best)
    return Accelerated(accelerator)

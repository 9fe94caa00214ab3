"""The training loop built step by step in notebook 03, as one tested function.

Every optimizer step does, in this order: forward with labels (under autocast for
bf16/fp16) and backward (scaled for fp16) for each of its ``grad_accum_steps``
batches, the gradient norm (clipped to ``max_grad_norm``), a health check, then
``optimizer.step()``, ``scheduler.step()`` and ``optimizer.zero_grad()``. With
``grad_accum_steps=k`` the gradients of k batches are summed (each loss divided by
k) before one optimizer step.

Failing safe. Before every optimizer step the loss and the gradient norm are
checked (``check_step``). Training stops with ``TrainingDivergedError``, before the
step can damage the weights, when the loss is NaN or infinite, when the gradient
norm is (except in fp16, where the gradient scaler skips such steps and lowers its
scale: that is its job), or when the loss exceeds ``explosion_factor`` times its
usual size (the larger of the first step's loss and the median of the last
``RECENT_STEPS``). A gradient norm beyond that bound is only suspect: clipping limits
the step, training goes on, but no checkpoint is taken around it.

Checkpoints hold the model, optimizer, scheduler, gradient scaler, random number
generators and the position in the data: tensors in files that load with
``torch.load(weights_only=True)``, plain data in JSON. A checkpoint is due after
step N, but it is written only once step N+1's forward and backward pass has shown
that the weights of step N give a healthy loss and gradient; so a catastrophic step
is never saved as "last good". Each checkpoint is a complete folder (``step-000012``
with the best weights so far inside), written under a temporary name, fsynced and
renamed; the file ``latest.json`` then points to it (the commit), and only after that
is the previous folder deleted. ``resume=True`` continues a killed run to
bit-identical weights (on the same hardware and thread count), and takes the learning
rate of the optimizer (and scheduler) you pass: resume a diverged run with a lower one.

With an ``accelerate.Accelerator`` (``train(..., accelerator=accelerator)``) the same
loop runs in one or many processes: utils/finetune.py launches it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import random
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from utils.environment import PRECISIONS, Precision, pick_precision, progress_bars_enabled
from utils.models import eval_mode
from utils.settings_checks import check_at_least, check_learning_rate, check_max_grad_norm, check_weight_decay

LATEST_FILE = "latest.json"  # names the newest complete checkpoint folder: written last, it commits one
STATE_FILE = "trainer_state.json"  # loop counters and history (plain data)
TENSORS_FILE = "training_state.pt"  # model, optimizer and gradient scaler (one process, no Accelerator)
SCHEDULER_FILE = "scheduler.pt"
BEST_MODEL_FILE = "best_model.pt"
RNG_FILE = "rng_state_{rank}.pt"  # random states, one file per process
OLD_CHECKPOINT_FILE = "checkpoint.pt"  # the earlier single-pickle format, refused when loading
CHECKPOINT_FORMAT = 2
RECENT_STEPS = 20  # steps whose loss and gradient norm set the scale of "exploded"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, damaged or foreign. The message names the file and the safe fix."""


class TrainingDivergedError(RuntimeError):
    """The loss or gradient norm became non-finite or exploded. ``history`` holds what was logged until then."""

    def __init__(self, message: str, history: TrainingHistory):
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


@dataclass
class TrainingConfig:
    """How long and how carefully ``train`` trains. Every field can also be given to ``train`` by name.

    Length: ``num_epochs`` passes over the loader, cut short by ``max_steps`` optimizer
    steps if given; one optimizer step consumes ``grad_accum_steps`` batches.
    Evaluation: every ``eval_every`` optimizer steps (default: at the end of each epoch),
    at the end, and with ``eval_at_start`` once before the first step (logged as step 0).
    With ``early_stopping_metric`` the best evaluation is tracked (``greater_is_better``)
    and with ``patience`` training stops after that many evaluations without improvement;
    ``restore_best`` loads the best weights back at the end.
    Checkpoints: with ``checkpoint_dir``, one every ``checkpoint_every`` steps and at the
    end; ``resume=True`` continues from the newest (``CheckpointError`` if there is none, or
    if it is damaged). Every number is checked against its range (``SettingsError``).
    ``explosion_factor=None`` turns off
    the "exploded" check (non-finite values always stop). ``progress=None`` shows a bar
    unless ``environment.quiet()`` ran.
    """

    num_epochs: int | None = 1
    max_steps: int | None = None
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0
    precision: str | Precision = "fp32"
    eval_every: int | None = None
    eval_at_start: bool = False
    early_stopping_metric: str | None = None
    greater_is_better: bool = True
    patience: int | None = None
    restore_best: bool = True
    checkpoint_dir: str | Path | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    progress: bool | None = None
    explosion_factor: float | None = 10.0

    def __post_init__(self):
        if self.grad_accum_steps < 1:
            raise ValueError("grad_accum_steps must be at least 1")
        if self.num_epochs is None and self.max_steps is None:
            raise ValueError("give num_epochs, max_steps, or both")
        if self.patience is not None and self.early_stopping_metric is None:
            raise ValueError("early stopping needs eval_fn, early_stopping_metric and patience")
        if (self.resume or self.checkpoint_every) and self.checkpoint_dir is None:
            raise ValueError("resume and checkpoint_every need a checkpoint_dir")
        if self.explosion_factor is not None and self.explosion_factor <= 1:
            raise ValueError("explosion_factor must be above 1 (or None to turn the check off)")
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Every number in its allowed range (``utils.settings_checks``), before any step is taken."""
        check_max_grad_norm(self.max_grad_norm)
        check_at_least(self.num_epochs, 1, "num_epochs")
        check_at_least(self.max_steps, 0, "max_steps")
        for name in ("eval_every", "checkpoint_every", "patience"):
            check_at_least(getattr(self, name), 1, name)


@dataclass
class LoopState:
    """Where training stands: the counters a checkpoint needs to continue exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    bad_evals: int = 0  # evaluations in a row without improvement (early stopping)


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


def fused_adamw_unavailable(model: torch.nn.Module) -> str | None:
    """Why torch's fused AdamW cannot update ``model``'s trainable parameters, or None if it can.

    The fused implementation updates each parameter tensor in one kernel that reads the
    weight, its gradient and both moment estimates once and writes them back, instead of
    one pass over memory per arithmetic operation (torch.optim's documentation calls it
    "vertical and horizontal fusion"). Without ``fused`` or ``foreach`` torch picks the
    ``foreach`` implementation only when every parameter is on a CUDA GPU, and a plain
    per-tensor loop otherwise (CPU included). Fused kernels exist for floating-point
    parameters on CPU, CUDA, MPS, XPU and a few other devices; the check tries a one-element
    step on each device and dtype in use, so it answers for the installed torch.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        return "the model has no trainable parameters"
    for device, dtype in sorted({(p.device, p.dtype) for p in parameters}, key=str):
        if not dtype.is_floating_point:
            return f"fused AdamW needs floating-point parameters, and some are {dtype}"
        probe = torch.zeros(1, device=device, dtype=dtype, requires_grad=True)
        probe.grad = torch.zeros_like(probe)
        try:
            torch.optim.AdamW([probe], fused=True).step()
        except RuntimeError as error:
            first_line = str(error).splitlines()[0]
            return f"torch {torch.__version__} has no fused AdamW for {dtype} on {device.type} ({first_line})"
    return None


def make_adamw(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float = 0.01,
    *,
    fused: bool | None = None,
    **adamw_options,
) -> torch.optim.AdamW:
    """AdamW over ``weight_decay_groups(model, weight_decay)``, with the fused kernel where it exists.

    ``fused=None`` (the default) uses the fused implementation if
    ``fused_adamw_unavailable(model)`` finds no obstacle, and otherwise warns with the
    reason and uses torch's default; ``fused=True`` raises ValueError with the reason
    instead; ``fused=False`` always uses torch's default. The update is the same
    algorithm either way; only the rounding of the last bits can differ. A learning rate
    that is not a positive finite number, or a negative weight decay, raises
    ``SettingsError`` (AdamW's own check misses them inside parameter groups).
    """
    check_learning_rate(learning_rate)
    check_weight_decay(weight_decay)
    obstacle = fused_adamw_unavailable(model) if fused is not False else None
    if obstacle is not None and fused:
        raise ValueError(f"fused=True, but {obstacle}. Pass fused=None to fall back to torch's default AdamW.")
    if obstacle is not None:
        warnings.warn(f"Using torch's default AdamW, not the faster fused one: {obstacle}.", stacklevel=2)
    use_fused = fused is not False and obstacle is None
    return torch.optim.AdamW(
        weight_decay_groups(model, weight_decay), lr=learning_rate, fused=use_fused or None, **adamw_options
    )


def clone_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a model's weights, e.g. to compare before and after training."""
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


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


# ------------------------------------------------------------- the health check


def _scale_of(values: list) -> float | None:
    """The larger of the run's first value and the median of its last RECENT_STEPS values (finite ones)."""
    recent = [v for v in values[-RECENT_STEPS:] if v is not None and math.isfinite(v)]
    first = [v for v in values[:1] if v is not None and math.isfinite(v)]
    candidates = first + ([float(np.median(recent))] if recent else [])
    return max(candidates) if candidates else None


@dataclass(frozen=True)
class StepHealth:
    """The check before an optimizer step: ``stop`` says why training must stop, ``suspect`` why
    the weights around this step must not be checkpointed; both None for a healthy step."""

    stop: str | None = None
    suspect: str | None = None


def _exploded(name: str, value: float | None, values: list, factor: float | None) -> str | None:
    scale = _scale_of(values)
    if factor is None or value is None or not math.isfinite(value) or not scale or value <= factor * scale:
        return None
    return (
        f"the {name} jumped to {value:.4g}, more than {factor:g}x its usual size ({scale:.4g}: the larger of "
        f"the first step's and the median of the last {RECENT_STEPS})"
    )


def check_step(
    loss: float,
    grad_norm: float | None,
    history: TrainingHistory,
    explosion_factor: float | None = 10.0,
    scaler_skips_inf: bool = False,
) -> StepHealth:
    """Decide, before the optimizer step, whether the step is healthy.

    Stop when the loss is NaN or infinite, when the gradient norm is (unless
    ``scaler_skips_inf``: fp16's gradient scaler skips such steps and lowers its scale
    itself), or when the loss exceeds ``explosion_factor`` times its usual size: the
    larger of the first step's loss and the median of the last ``RECENT_STEPS`` in
    ``history``. The first step anchors the scale, so a run whose loss has fallen far
    may still meet a hard batch, and a slowly diverging run cannot ratchet the scale up.
    A gradient norm beyond the same bound makes the step suspect: clipping bounds its
    update, so training goes on, but no checkpoint is taken around it.
    """
    if not math.isfinite(loss):
        return StepHealth(stop=f"the loss became {loss}")
    if grad_norm is not None and not math.isfinite(grad_norm) and not scaler_skips_inf:
        return StepHealth(stop=f"the gradient norm became {grad_norm}")
    stop = _exploded("loss", loss, history.column("loss"), explosion_factor)
    if stop is not None:
        return StepHealth(stop=stop)
    return StepHealth(suspect=_exploded("gradient norm", grad_norm, history.column("grad_norm"), explosion_factor))


def _divergence_message(problem: str, state: LoopState, checkpoint_dir: Path | None, group_size: int = 1) -> str:
    """What went wrong where, what was kept, and what to try. Reads only ``latest.json`` of the checkpoints."""
    first, last = state.batch_in_epoch - group_size + 1, state.batch_in_epoch  # the step's batches, counted from 1
    batches = f"batch {last}" if group_size == 1 else f"batches {first}-{last}"
    where = f"at optimizer step {state.step + 1} (epoch {state.epoch + 1}, {batches})"
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


# ------------------------------------------------------------ files, atomically


def _fsync_dir(folder: Path) -> None:
    """Make a rename or a new file inside ``folder`` durable (POSIX; Windows cannot open folders)."""
    if os.name == "nt":
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename it over ``path``.

    A crash while writing leaves the previous file intact: the rename is atomic, and the
    folder is fsynced so that the rename itself survives a power cut.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _write_json(data: dict, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, default=_plain_number, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _plain_number(value: object) -> object:
    """JSON for NumPy and torch scalars that metrics often are; anything else is an error."""
    if isinstance(value, np.generic) or (torch.is_tensor(value) and value.numel() == 1):
        return value.item()
    raise TypeError(f"A checkpoint stores the history as JSON; {type(value).__name__} values are not supported.")


def _latest_folder(checkpoint_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder, or None. Reads only the small ``latest.json``."""
    checkpoint_dir = Path(checkpoint_dir)
    latest = checkpoint_dir / LATEST_FILE
    if not latest.exists():
        if (checkpoint_dir / OLD_CHECKPOINT_FILE).exists():
            raise ValueError(
                f"{checkpoint_dir / OLD_CHECKPOINT_FILE} is a checkpoint in the earlier format, a pickle that can "
                "run code when loaded. It is not loaded: delete it (or the folder) and train again."
            )
        return None
    folder = checkpoint_dir / _folder_named_in(latest)
    if not (folder / STATE_FILE).exists():
        raise CheckpointError(f"{latest} points to {folder.name}, which is missing or incomplete; delete {checkpoint_dir}.")
    return folder


def _read_checkpoint_json(path: Path) -> dict:
    """A JSON file of a checkpoint as a dict, or CheckpointError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the checkpoint in {path.parent} is incomplete. "
                              f"{_CHECKPOINT_FIX}") from None  # fmt: skip
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}): the file is damaged. {_CHECKPOINT_FIX}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds {type(data).__name__}, not a JSON object. {_CHECKPOINT_FIX}")
    return data


def _folder_named_in(latest: Path) -> str:
    """The checkpoint folder ``latest.json`` names: a plain folder name inside its own folder, nothing else."""
    name = _read_checkpoint_json(latest).get("folder")
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise CheckpointError(
            f"{latest} names the folder {name!r}, which is not a folder inside {latest.parent}: the file was "
            f"edited or comes from elsewhere, and a checkpoint is only read from its own folder. {_CHECKPOINT_FIX}"
        )
    return name


_CHECKPOINT_FIX = (
    "Delete the checkpoint folder and train again (resume=False), or put back an intact copy of it. Do not "
    "load it with torch.load(weights_only=False): that runs whatever code a file holds."
)


def load_tensors(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU; a missing, damaged or foreign file raises
    CheckpointError naming the file, the cause and the safe fix (never ``weights_only=False``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the checkpoint in {path.parent} is incomplete. "
                              f"{_CHECKPOINT_FIX}") from None  # fmt: skip
    except pickle.UnpicklingError:
        cause = "it holds Python objects other than tensors and plain data (a foreign or tampered file)"
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        cause = f"it is truncated or damaged ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
    raise CheckpointError(f"{path} cannot be loaded safely: {cause}. {_CHECKPOINT_FIX}")


def checkpoint_step(checkpoint_dir: str | Path) -> int | None:
    """The optimizer step of the newest checkpoint in ``checkpoint_dir`` (None if there is none), cheaply."""
    latest = Path(checkpoint_dir) / LATEST_FILE
    return int(_read_checkpoint_json(latest)["step"]) if latest.exists() else None


def load_checkpoint(checkpoint_dir: str | Path) -> dict | None:
    """Everything in the newest checkpoint of ``checkpoint_dir``, or None if there is none.

    Returns a dict with ``state`` (loop counters, a dict), ``history`` (TrainingHistory),
    ``folder`` and the tensors (``training`` for a one-process run, ``scheduler``,
    ``best_model``, ``rng``). Every file is read with ``torch.load(weights_only=True)``,
    which cannot run code, so a checkpoint folder from elsewhere is safe to open; a missing
    ``training_state.pt`` (one-process checkpoints), a damaged or a foreign file raises
    ``CheckpointError`` naming the file, as resuming does.
    """
    folder = _latest_folder(checkpoint_dir)
    if folder is None:
        return None
    saved = _read_checkpoint_json(folder / STATE_FILE)
    tensors = {}
    for key, name in [("training", TENSORS_FILE), ("scheduler", SCHEDULER_FILE), ("best_model", BEST_MODEL_FILE)]:
        path = folder / name
        required = name == TENSORS_FILE and not _written_by_accelerate(folder)
        tensors[key] = load_tensors(path) if path.exists() or required else None
    return {"state": saved["state"], "history": TrainingHistory(**saved["history"]), "folder": folder, **tensors}


# ------------------------------------------------------------- random states


def _written_by_accelerate(folder: Path) -> bool:
    """Whether an Accelerator's ``save_state`` wrote the checkpoint (then its files replace ``training_state.pt``)."""
    return any(any(folder.glob(pattern)) for pattern in ("optimizer*", "model*.safetensors", "pytorch_model*"))


def _rng_state() -> dict:
    """Every global random state a training step can touch, as tensors and plain data."""
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    python_version, python_state, gauss = state["python"]
    random.setstate((python_version, tuple(python_state), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _loader_generators(loader) -> list[torch.Generator]:
    """The random generators that decide a DataLoader's order (sampler and loader, also when Accelerate wraps it)."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    owners = [
        loader,
        getattr(loader, "sampler", None),
        getattr(batch_sampler, "sampler", None),
        getattr(getattr(batch_sampler, "batch_sampler", None), "sampler", None),  # accelerate's BatchSamplerShard
    ]
    found = [getattr(owner, "generator", None) for owner in owners]
    found.append(getattr(loader, "synchronized_generator", None))
    unique = []
    for generator in found:
        if isinstance(generator, torch.Generator) and all(generator is not g for g in unique):
            unique.append(generator)
    return unique


# ------------------------------------------------- one process, or Accelerate


class _OneProcess:
    """How a step runs in one process: torch.autocast for bf16/fp16, a GradScaler for fp16."""

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

    def gradient_norm(self, model, optimizer, max_norm: float | None) -> float:
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
        atomic_save(state, folder / TENSORS_FILE)

    def load(self, model, optimizer, folder: Path) -> None:
        state = load_tensors(folder / TENSORS_FILE)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])


class _Accelerated:
    """How a step runs under an ``accelerate.Accelerator``: its autocast, scaler, gradient sync and checkpoints."""

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

    def gradient_norm(self, model, optimizer, max_norm: float | None) -> float | None:
        # DDP has averaged the gradients already, so every process sees the same norm. Under
        # DeepSpeed clipping is its config's "gradient_clipping" and no norm comes back (None).
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
        self.accelerator.save_state(str(folder))  # every process: sharded states need all of them
        for path in folder.iterdir():
            if path.is_file():
                _fsync_file(path)

    def load(self, model, optimizer, folder: Path) -> None:
        try:
            self.accelerator.load_state(str(folder))  # accelerate reads its files with weights_only=True
        except (pickle.UnpicklingError, RuntimeError, EOFError, FileNotFoundError) as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(f"The checkpoint in {folder} cannot be loaded ({first_line}). {_CHECKPOINT_FIX}") from None


def _steps_for(model, config: TrainingConfig, accelerator):
    if accelerator is None:
        return _OneProcess(model, _resolve_precision(config.precision, next(model.parameters()).device))
    wanted = config.precision.name if isinstance(config.precision, Precision) else config.precision
    has = {"no": "fp32"}.get(str(accelerator.mixed_precision), str(accelerator.mixed_precision))
    if wanted not in ("auto", "fp32", has):
        raise ValueError(
            f"precision={wanted!r}, but the Accelerator runs {has}: with an Accelerator, set the precision there "
            "(Accelerator(mixed_precision=...) or accelerate launch --mixed_precision)."
        )
    kind = str(accelerator.distributed_type).rsplit(".", 1)[-1]
    if kind == "DEEPSPEED" and config.grad_accum_steps > 1:
        raise ValueError(
            "With DeepSpeed, accelerator.backward also steps the optimizer, so train() needs grad_accum_steps=1: "
            "raise the batch size per process, or the number of processes, instead."
        )
    sharded = kind in ("FSDP", "DEEPSPEED")
    if sharded and config.restore_best and config.early_stopping_metric is not None:
        raise ValueError(
            "restore_best keeps a full copy of the best weights, which train() does not do for sharded models "
            "(FSDP, DeepSpeed): pass restore_best=False and reload the best checkpoint yourself."
        )
    return _Accelerated(accelerator)


# ---------------------------------------------------------- batches and steps


class _StepBatches:
    """The training loader cut into optimizer steps of ``grad_accum_steps`` batches, restartable at any step.

    Every epoch's iterator is made from recorded random states, so a resumed run rebuilds
    the interrupted epoch's order exactly and skips the batches already used.
    """

    def __init__(self, loader, grad_accum_steps: int):
        self.loader = loader
        self.grad_accum_steps = grad_accum_steps
        self.per_epoch = len(loader)
        self.steps_per_epoch = math.ceil(self.per_epoch / grad_accum_steps)
        self.generators = _loader_generators(loader)
        self.epoch_start_rng: dict | None = None  # random states when the current epoch's iterator was made
        self.resume_rng: dict | None = None  # set when resuming: {"rng": ..., "epoch_start": ...}

    def groups(self, state: LoopState) -> Iterator[list[dict]]:
        """Lists of batches, one per optimizer step; updates ``state``'s position as it goes."""
        while True:
            batches = self._start_epoch(state.batch_in_epoch)
            for start in range(state.batch_in_epoch, self.per_epoch, self.grad_accum_steps):
                group = [next(batches) for _ in range(min(self.grad_accum_steps, self.per_epoch - start))]
                state.batch_in_epoch = start + len(group)
                yield group
            state.epoch += 1
            state.batch_in_epoch = 0

    def _start_epoch(self, skip: int) -> Iterator[dict]:
        resume, self.resume_rng = self.resume_rng, None
        if resume is not None and skip > 0:
            _set_rng_state(resume["epoch_start"]["global"])
            for generator, saved in zip(self.generators, resume["epoch_start"]["loaders"]):
                generator.set_state(saved)
        self.epoch_start_rng = {"global": _rng_state(), "loaders": [g.get_state() for g in self.generators]}
        batches = iter(self.loader)
        for _ in range(skip):
            next(batches)
        if resume is not None:
            _set_rng_state(resume["rng"])
        return batches


@dataclass
class _Snapshot:
    """What a checkpoint of step N holds besides the model and optimizer, taken right after step N."""

    state: LoopState
    history: dict
    rng: dict
    epoch_start_rng: dict | None
    scheduler: dict | None
    best_weights: dict | None
    best_version: int  # changes whenever the best weights do


def _learning_rates(optimizer, scheduler) -> list[float]:
    """The base (peak) learning rate of each parameter group."""
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        return list(scheduler.base_lrs)
    return [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]


def set_learning_rates(optimizer, scheduler, rates: list[float]) -> None:
    """Give a loaded optimizer and scheduler new base learning rates, keeping the schedule's position.

    The current rate of each group is scaled by new/old base rate, so a warmup or decay
    continues from where it was, at the new height. Used when resuming with a new rate.
    """
    for group, base, rate in zip(optimizer.param_groups, _learning_rates(optimizer, scheduler), rates):
        if rate == base:
            continue
        group["lr"] = group["lr"] * rate / base if base else rate
        if "initial_lr" in group:
            group["initial_lr"] = rate
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = list(rates)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


# ------------------------------------------------------------------- the run


class _Run:
    """The state of one call of ``train`` and the pieces of its loop, one method each."""

    def __init__(self, model, optimizer, scheduler, config: TrainingConfig, eval_fn, steps, batches: _StepBatches):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.config, self.eval_fn, self.steps, self.batches = config, eval_fn, steps, batches
        self.history = TrainingHistory()
        self.state = LoopState()
        self.eval_every = config.eval_every or batches.steps_per_epoch
        self.checkpoint_dir = Path(config.checkpoint_dir) if config.checkpoint_dir is not None else None
        self.best_weights: dict | None = None
        self.best_version = 0
        self.best_file: tuple[int, Path] | None = None  # (best_version, the committed file that holds them)
        self.pending: _Snapshot | None = None  # a checkpoint waiting for the next step to prove it healthy
        self.step_started = time.perf_counter()

    def total_steps(self) -> int:
        config, per_epoch = self.config, self.batches.steps_per_epoch
        total = per_epoch * config.num_epochs if config.num_epochs is not None else config.max_steps
        return min(total, config.max_steps) if config.max_steps is not None else total

    def epoch_of(self, step: int) -> float:
        return round(step / self.batches.steps_per_epoch, 4)

    # -- forward and backward, and the check before the optimizer step

    def forward_backward(self, group: list[dict]) -> tuple[float, int]:
        """Forward and backward over one step's batches; returns the mean loss and the examples of all processes."""
        losses, examples = [], 0
        for index, batch in enumerate(group):
            examples += batch_size_of(batch)
            batch = move_to_device(batch, self.steps.device)
            last = index == len(group) - 1
            with self.steps.no_sync(self.model) if not last else contextlib.nullcontext():
                with self.steps.autocast():
                    loss = self.model(**batch).loss
                self.steps.backward(loss / len(group))
            losses.append(loss.detach())
        return self.steps.across_processes(torch.stack(losses).float().mean(), examples)

    def check(self, loss: float, grad_norm: float | None, group_size: int) -> bool:
        """Stop before the optimizer step if the loss or gradients are broken (``check_step``); False if suspect."""
        health = check_step(loss, grad_norm, self.history, self.config.explosion_factor, self.steps.scaler_skips_inf)
        if health.stop is not None:
            self.pending = None  # its weights produced this step: not good
            message = _divergence_message(health.stop, self.state, self.checkpoint_dir, group_size)
            raise TrainingDivergedError(message, self.history)
        if health.suspect is not None and self.checkpoint_dir is not None and self.steps.is_main:
            warnings.warn(f"Step {self.state.step + 1}: {health.suspect}; no checkpoint is taken around it.", stacklevel=4)
        return health.suspect is None

    # -- the optimizer step and its record

    def optimizer_step(self) -> float:
        """Step the optimizer and the schedule, clear the gradients; returns the learning rate used."""
        learning_rate = self.optimizer.param_groups[0]["lr"]
        self.steps.optimizer_step(self.optimizer)
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return learning_rate

    def log_step(self, loss: float, grad_norm: float | None, examples: int, learning_rate: float) -> None:
        self.state.step += 1
        self.history.examples_seen += examples
        self.history.steps.append(
            {
                "step": self.state.step,
                "epoch": self.epoch_of(self.state.step),
                "loss": loss,
                "learning_rate": learning_rate,
                "grad_norm": grad_norm,
            }
        )
        self.history.train_seconds += time.perf_counter() - self.step_started

    # -- evaluation and early stopping

    def evaluate(self) -> bool:
        """Run eval_fn, log it, track the best weights; return True to stop early."""
        started = time.perf_counter()
        with eval_mode(self.model):
            metrics = self.eval_fn(self.model)
        self.history.eval_seconds += time.perf_counter() - started
        self.history.evaluations.append({"step": self.state.step, "epoch": self.epoch_of(self.state.step), **metrics})
        return self.track_best(metrics)

    def track_best(self, metrics: dict) -> bool:
        name, config = self.config.early_stopping_metric, self.config
        if name is None:
            return False
        if name not in metrics:
            raise KeyError(f"eval_fn returned {sorted(metrics)}, not the early-stopping metric {name!r}")
        value, best = float(metrics[name]), self.history.best_metric
        if best is None or (value > best if config.greater_is_better else value < best):
            self.history.best_metric, self.history.best_step = value, self.state.step
            self.state.bad_evals = 0
            if config.restore_best:
                self.best_weights = clone_state_dict(self.steps.unwrap(self.model))
                self.best_version += 1
        else:
            self.state.bad_evals += 1
        return config.patience is not None and self.state.bad_evals >= config.patience

    def evaluate_if_due(self, last: bool) -> bool:
        if self.eval_fn is None or not (self.state.step % self.eval_every == 0 or last):
            return False
        stop = self.evaluate()
        self.history.stopped_early = stop and self.state.step < self.total_steps()
        return stop

    # -- checkpoints

    def snapshot(self) -> _Snapshot:
        return _Snapshot(
            state=dataclasses.replace(self.state),
            history=dataclasses.asdict(self.history),
            rng=_rng_state(),
            epoch_start_rng=self.batches.epoch_start_rng,
            scheduler=self.scheduler.state_dict() if self.scheduler is not None else None,
            best_weights=self.best_weights,
            best_version=self.best_version,
        )

    def checkpoint_if_due(self, last: bool, healthy: bool) -> None:
        """At the end, write a checkpoint now; every ``checkpoint_every`` steps, wait for the next step's check."""
        every = self.config.checkpoint_every
        if self.checkpoint_dir is None or not healthy or not (last or (every and self.state.step % every == 0)):
            return
        if last:
            self.ensure_finite_weights()
            self.write_checkpoint(self.snapshot())
        else:
            self.pending = self.snapshot()

    def commit_pending(self, healthy: bool) -> None:
        """Write the pending checkpoint if its weights have just given a healthy step; else drop it."""
        snapshot, self.pending = self.pending, None
        if snapshot is not None and healthy:
            self.write_checkpoint(snapshot)

    def ensure_finite_weights(self) -> None:
        """No later step tests the final weights: at least they must be finite."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            problem = "the weights became non-finite in the last step"
            state = dataclasses.replace(self.state, step=self.state.step - 1)  # the step that made them
            raise TrainingDivergedError(_divergence_message(problem, state, self.checkpoint_dir), self.history)

    def write_checkpoint(self, snapshot: _Snapshot) -> None:
        """Write a complete checkpoint folder, then commit it in ``latest.json``, then delete the previous one."""
        steps, name = self.steps, f"step-{snapshot.state.step:06d}"
        temporary = self.checkpoint_dir / f".{name}.tmp"
        if steps.is_main:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        steps.wait()
        steps.save(self.model, self.optimizer, temporary)
        atomic_save(snapshot.rng | {"epoch_start": snapshot.epoch_start_rng}, temporary / RNG_FILE.format(rank=steps.process_index))
        steps.wait()
        if steps.is_main:
            self.write_plain_files(snapshot, temporary)
            final = self.commit(temporary, name, snapshot.state.step)
            if snapshot.best_weights is not None:
                self.best_file = (snapshot.best_version, final / BEST_MODEL_FILE)
        steps.wait()

    def write_plain_files(self, snapshot: _Snapshot, folder: Path) -> None:
        if snapshot.scheduler is not None:
            atomic_save(snapshot.scheduler, folder / SCHEDULER_FILE)
        if snapshot.best_weights is not None:
            self.save_best(snapshot, folder / BEST_MODEL_FILE)
        state = {
            "format": CHECKPOINT_FORMAT,
            "state": dataclasses.asdict(snapshot.state),
            "num_processes": self.steps.num_processes,
            "history": snapshot.history,
        }
        _write_json(state, folder / STATE_FILE)

    def save_best(self, snapshot: _Snapshot, path: Path) -> None:
        """The best weights: a hard link to the previous checkpoint's copy when they have not changed."""
        previous = self.best_file
        if previous is not None and previous[0] == snapshot.best_version and previous[1].exists():
            try:
                os.link(previous[1], path)
            except OSError:
                shutil.copy2(previous[1], path)
        else:
            atomic_save(snapshot.best_weights, path)

    def commit(self, temporary: Path, name: str, step: int) -> Path:
        final = self.checkpoint_dir / name
        suffix = 1
        while final.exists():
            final, suffix = self.checkpoint_dir / f"{name}-{suffix}", suffix + 1
        _fsync_dir(temporary)
        os.replace(temporary, final)
        _fsync_dir(self.checkpoint_dir)
        _write_json({"step": step, "folder": final.name}, self.checkpoint_dir / LATEST_FILE)
        for old in self.checkpoint_dir.iterdir():
            if old.is_dir() and old != final and (old.name.startswith("step-") or old.name.endswith(".tmp")):
                shutil.rmtree(old, ignore_errors=True)
        return final

    def resume(self) -> None:
        """Continue from the newest checkpoint, with the learning rate of the optimizer and scheduler passed in."""
        folder = _latest_folder(self.checkpoint_dir)
        if folder is None:
            raise CheckpointError(
                f"resume=True, but {self.checkpoint_dir} holds no checkpoint ({LATEST_FILE} is missing): nothing "
                "to resume. Check the folder's name, or pass resume=False to start a new run."
            )
        saved = _read_checkpoint_json(folder / STATE_FILE)
        if saved["num_processes"] != self.steps.num_processes:
            raise ValueError(
                f"The checkpoint in {folder} was written by {saved['num_processes']} processes; resume it with "
                f"the same number (now {self.steps.num_processes}), since each process's place in the data is saved."
            )
        requested = _learning_rates(self.optimizer, self.scheduler)
        self.steps.load(self.model, self.optimizer, folder)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(load_tensors(folder / SCHEDULER_FILE))
        set_learning_rates(self.optimizer, self.scheduler, requested)
        self.state = LoopState(**saved["state"])
        self.history = TrainingHistory(**saved["history"])
        self.history.resumed_from_step = self.state.step
        rng = load_tensors(folder / RNG_FILE.format(rank=self.steps.process_index))
        self.batches.resume_rng = {"rng": rng, "epoch_start": rng["epoch_start"]}
        if (folder / BEST_MODEL_FILE).exists():
            self.best_weights = load_tensors(folder / BEST_MODEL_FILE)
            self.best_version = 1
            self.best_file = (self.best_version, folder / BEST_MODEL_FILE)

    def finish(self) -> TrainingHistory:
        if self.config.restore_best and self.best_weights is not None:
            self.steps.unwrap(self.model).load_state_dict(self.best_weights)
        return self.history


# ------------------------------------------------------------------- the loop


def _settle_config(config: TrainingConfig | None, settings: dict) -> TrainingConfig:
    known = {f.name for f in dataclasses.fields(TrainingConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"train() got unknown settings {unknown}; TrainingConfig has {sorted(known)}.")
    return dataclasses.replace(config, **settings) if config is not None else TrainingConfig(**settings)


def _check_arguments(config: TrainingConfig, eval_fn, scheduler) -> None:
    if config.patience is not None and eval_fn is None:
        raise ValueError("early stopping needs eval_fn, early_stopping_metric and patience")
    if type(scheduler).__name__ == "AcceleratedScheduler":
        raise ValueError(
            "Pass the scheduler to train() without accelerator.prepare: prepared, it steps once per process at "
            "every optimizer step. Build it for the number of optimizer steps that train() takes."
        )


def train(
    model: torch.nn.Module,
    train_loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    config: TrainingConfig | None = None,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    on_step: Callable[[int, TrainingHistory], None] | None = None,
    accelerator=None,
    **settings,
) -> TrainingHistory:
    """Train ``model`` on batches from ``train_loader``; return a ``TrainingHistory``.

    The model must return ``.loss`` when called with a batch that includes labels (all
    transformers task models do). Batches are moved to the model's device. How long and
    how carefully to train is a ``TrainingConfig``, or its fields by name:
    ``train(model, loader, optimizer, num_epochs=3, max_grad_norm=1.0)`` is
    ``train(model, loader, optimizer, TrainingConfig(num_epochs=3, max_grad_norm=1.0))``;
    names given next to a config override its fields.

    ``eval_fn(model)`` returns a dict of metrics (called in eval mode); ``on_step(step,
    history)`` runs after every optimizer step. With ``accelerator`` (an
    ``accelerate.Accelerator`` that prepared the model, optimizer and loader; the
    scheduler not prepared) the same loop runs in every process: see utils/finetune.py.
    """
    config = _settle_config(config, settings)
    _check_arguments(config, eval_fn, scheduler)
    steps = _steps_for(model, config, accelerator)
    run = _Run(model, optimizer, scheduler, config, eval_fn, steps, _StepBatches(train_loader, config.grad_accum_steps))
    _open_checkpoints(run)
    show_bar = (progress_bars_enabled() if config.progress is None else config.progress) and steps.is_main
    bar = tqdm(total=run.total_steps(), initial=run.state.step, disable=not show_bar, desc="training", unit="step")
    started = time.perf_counter()
    try:
        _loop(run, bar, on_step)
    finally:
        bar.close()
        run.history.total_seconds += time.perf_counter() - started
    return run.finish()


def _open_checkpoints(run: _Run) -> None:
    """Make the checkpoint folder (main process) and, with ``resume``, continue from it; a folder that does
    not exist is refused before anything is created, one without a checkpoint by ``_Run.resume``."""
    if run.config.resume and not run.checkpoint_dir.is_dir():
        raise CheckpointError(
            f"resume=True, but the checkpoint folder {run.checkpoint_dir} does not exist: nothing to resume. "
            "Check its name, or pass resume=False to start a new run."
        )
    if run.checkpoint_dir is not None and run.steps.is_main:
        run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if run.config.resume:
        run.resume()


def _loop(run: _Run, bar, on_step) -> None:
    """Notebook 03's loop: forward and backward, check, optimizer step, evaluation, checkpoint."""
    run.model.train()
    run.optimizer.zero_grad(set_to_none=True)
    if run.eval_fn is not None and run.config.eval_at_start and run.state.step == 0 and not run.history.evaluations:
        run.evaluate()
    if run.state.step >= run.total_steps():
        return
    run.step_started = time.perf_counter()
    for group in run.batches.groups(run.state):
        loss, examples = run.forward_backward(group)
        grad_norm = run.steps.gradient_norm(run.model, run.optimizer, run.config.max_grad_norm)
        healthy = run.check(loss, grad_norm, len(group))
        run.commit_pending(healthy)
        learning_rate = run.optimizer_step()
        run.log_step(loss, grad_norm, examples, learning_rate)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        last = run.state.step >= run.total_steps()
        stop = run.evaluate_if_due(last) or last
        run.checkpoint_if_due(stop, healthy)
        if on_step is not None:
            on_step(run.state.step, run.history)
        if stop:
            break
        run.step_started = time.perf_counter()

"""The training loop built step by step in notebook 03, as one tested function: ``train``.

``train`` is notebook 03's loop, in its order: for each epoch, for each batch, forward with labels
and backward; once a step's ``grad_accum_steps`` batches are in (each loss divided by their number),
clip the gradients, check the step, ``optimizer.step()``, ``scheduler.step()``, ``zero_grad()``.
Around it, with a call each: the safety check before every optimizer step (``utils.step_health``:
a diverging run stops before the step can damage the weights), evaluation and early stopping, and
checkpoints that resume a killed run to bit-identical weights (``utils.checkpoints``, with the random
states of ``utils.random_state``). ``resume=True`` takes the learning rate of the optimizer (and
scheduler) you pass: resume a diverged run with a lower one. With an ``accelerate.Accelerator``
(``train(..., accelerator=accelerator)``) the same loop runs in one or many processes
(``utils.processes``; utils/finetune.py launches it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from utils.checkpoints import CheckpointError, Checkpoints, Snapshot
from utils.environment import Precision, progress_bars_enabled
from utils.models import eval_mode
from utils.processes import processes_for
from utils.random_state import loader_generators, loader_state, rng_state, set_loader_state, set_rng_state
from utils.settings_checks import check_at_least, check_learning_rate, check_max_grad_norm, check_weight_decay
from utils.step_health import check_step, divergence_message
from utils.training_state import LoopState, TrainingHistory

__all__ = ["TrainingConfig", "TrainingDivergedError", "TrainingHistory", "clone_state_dict", "make_adamw",
           "move_to_device", "train", "weight_decay_groups"]  # fmt: skip


class TrainingDivergedError(RuntimeError):
    """The loss or gradient norm became non-finite or exploded. ``history`` holds what was logged until then."""

    def __init__(self, message: str, history: TrainingHistory):
        super().__init__(message)
        self.history = history


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


class _ResumableEpochs:
    """The loader's epochs and batches from where training stands (``state``), restartable at any step.

    Every epoch's iterator is made from recorded random states, so a resumed run rebuilds
    the interrupted epoch's order exactly and skips the batches already used.
    """

    def __init__(self, loader, state: LoopState):
        self.loader, self.state = loader, state
        self.per_epoch = len(loader)
        self.generators = loader_generators(loader)
        self.epoch_start_rng: dict | None = None  # random states when the current epoch's iterator was made
        self.resume_rng: dict | None = None  # set when resuming: {"rng": ..., "epoch_start": ...}

    def __iter__(self) -> Iterator[int]:
        """The epoch numbers; an epoch ends when the loop asks for the next one."""
        while True:
            yield self.state.epoch
            self.state.epoch += 1
            self.state.batch_in_epoch = 0

    def batches(self) -> Iterator[tuple[int, dict]]:
        """``(index, batch)`` for the rest of the current epoch; updates the position in ``state``."""
        skip = self.state.batch_in_epoch
        batches = self._start_epoch(skip)
        for index in range(skip, self.per_epoch):
            batch = next(batches)
            self.state.batch_in_epoch = index + 1
            yield index, batch

    def _start_epoch(self, skip: int) -> Iterator[dict]:
        resume, self.resume_rng = self.resume_rng, None
        if resume is not None and skip > 0:
            set_loader_state(resume["epoch_start"], self.generators)
        self.epoch_start_rng = loader_state(self.generators)
        batches = iter(self.loader)
        for _ in range(skip):
            next(batches)
        if resume is not None:
            set_rng_state(resume["rng"])
        return batches


class _Run:
    """What one call of ``train`` keeps between steps: settings, counters, history, best weights, checkpoints."""

    def __init__(self, model, loader, optimizer, scheduler, config: TrainingConfig, eval_fn, processes):
        self.model, self.optimizer, self.scheduler, self.config = model, optimizer, scheduler, config
        self.eval_fn, self.processes = eval_fn, processes
        self.history, self.state = TrainingHistory(), LoopState()
        self.epochs = _ResumableEpochs(loader, self.state)
        self.steps_per_epoch = math.ceil(len(loader) / config.grad_accum_steps)
        total = self.steps_per_epoch * config.num_epochs if config.num_epochs is not None else config.max_steps
        self.total_steps = min(total, config.max_steps) if config.max_steps is not None else total
        self.eval_every = config.eval_every or self.steps_per_epoch
        self.checkpoint_dir = Path(config.checkpoint_dir) if config.checkpoint_dir is not None else None
        self.checkpoints = Checkpoints(self.checkpoint_dir, processes) if self.checkpoint_dir is not None else None
        self.best_weights: dict | None = None
        self.best_version = 0  # changes whenever the best weights do
        self.step_losses: list[torch.Tensor] = []
        self.step_examples = 0
        self.step_started = time.perf_counter()

    def epoch_of(self, step: int) -> float:
        return round(step / self.steps_per_epoch, 4)

    def step_boundary(self, index: int) -> tuple[bool, int]:
        """Whether batch ``index`` of the epoch ends an optimizer step, and how many batches that step has."""
        start = index - index % self.config.grad_accum_steps
        size = min(self.config.grad_accum_steps, self.epochs.per_epoch - start)
        return index == start + size - 1, size

    def record_batch(self, loss: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> None:
        self.step_losses.append(loss.detach())
        self.step_examples += batch_size_of(batch)

    def step_loss(self) -> tuple[float, int]:
        """The mean loss of the step's batches and its examples, over every process."""
        loss = torch.stack(self.step_losses).float().mean()
        result = self.processes.across_processes(loss, self.step_examples)
        self.step_losses, self.step_examples = [], 0
        return result

    def log_step(self, loss: float, grad_norm: float | None, examples: int, learning_rate: float, bar) -> None:
        self.state.step += 1
        self.history.examples_seen += examples
        record = {"step": self.state.step, "epoch": self.epoch_of(self.state.step), "loss": loss,
                  "learning_rate": learning_rate, "grad_norm": grad_norm}  # fmt: skip
        self.history.steps.append(record)
        self.history.train_seconds += time.perf_counter() - self.step_started
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")

    def finish(self) -> TrainingHistory:
        if self.config.restore_best and self.best_weights is not None:
            self.processes.unwrap(self.model).load_state_dict(self.best_weights)
        return self.history


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


def train(model: torch.nn.Module, train_loader: torch.utils.data.DataLoader, optimizer: torch.optim.Optimizer,
          config: TrainingConfig | None = None, *, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
          eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
          on_step: Callable[[int, TrainingHistory], None] | None = None, accelerator=None, **settings) -> TrainingHistory:
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
    run = _start_run(model, train_loader, optimizer, scheduler, eval_fn, accelerator, _settle_config(config, settings))
    processes = run.processes
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with _timed(run), _progress_bar(run) as bar:
        for _epoch in run.epochs if run.state.step < run.total_steps else ():
            for index, batch in run.epochs.batches():
                ends_step, batches_in_step = run.step_boundary(index)
                with processes.no_sync(model) if not ends_step else contextlib.nullcontext():
                    with processes.autocast():
                        loss = model(**move_to_device(batch, processes.device)).loss  # forward, with labels
                    processes.backward(loss / batches_in_step)  # backward: the gradients add up in .grad
                run.record_batch(loss, batch)
                if not ends_step:
                    continue
                step_loss, examples = run.step_loss()
                grad_norm = processes.clip_gradients(model, optimizer, run.config.max_grad_norm)  # clip
                healthy = _stop_if_diverged(run, step_loss, grad_norm, batches_in_step)  # check, before the step
                if run.checkpoints is not None:
                    run.checkpoints.commit_pending(healthy, model, optimizer)  # the last step proved its weights
                learning_rate = optimizer.param_groups[0]["lr"]
                processes.optimizer_step(optimizer)  # optimizer step
                if scheduler is not None:
                    scheduler.step()  # scheduler step, once per optimizer step
                optimizer.zero_grad(set_to_none=True)  # clear the gradients for the next step
                run.log_step(step_loss, grad_norm, examples, learning_rate, bar)
                if _evaluate_checkpoint_and_decide_to_stop(run, healthy, on_step):
                    return run.finish()
    return run.finish()


def _start_run(model, loader, optimizer, scheduler, eval_fn, accelerator, config: TrainingConfig) -> _Run:
    """The run's state: checked arguments, the checkpoint folder, and with ``resume`` the newest checkpoint;
    with ``eval_at_start``, one evaluation before the first step (logged as step 0)."""
    _check_arguments(config, eval_fn, scheduler)
    run = _Run(model, loader, optimizer, scheduler, config, eval_fn, processes_for(model, config, accelerator))
    if config.resume and not run.checkpoint_dir.is_dir():
        raise CheckpointError(
            f"resume=True, but the checkpoint folder {run.checkpoint_dir} does not exist: nothing to resume. "
            "Check its name, or pass resume=False to start a new run."
        )
    if run.checkpoint_dir is not None and run.processes.is_main:
        run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if config.resume:
        _resume(run)
    if eval_fn is not None and config.eval_at_start and run.state.step == 0 and not run.history.evaluations:
        _evaluate(run)
    return run


def _resume(run: _Run) -> None:
    """Continue from the newest checkpoint, with the learning rate of the optimizer and scheduler passed in."""
    saved = run.checkpoints.resume(run.model, run.optimizer, run.scheduler)
    for name, value in saved["state"].items():
        setattr(run.state, name, value)
    run.history = TrainingHistory(**saved["history"])
    run.history.resumed_from_step = run.state.step
    run.epochs.resume_rng = {"rng": saved["rng"], "epoch_start": saved["rng"]["epoch_start"]}
    if saved["best_weights"] is not None:
        run.best_weights, run.best_version = saved["best_weights"], 1


@contextlib.contextmanager
def _timed(run: _Run):
    started = time.perf_counter()
    try:
        yield
    finally:
        run.history.total_seconds += time.perf_counter() - started


def _progress_bar(run: _Run):
    shown = progress_bars_enabled() if run.config.progress is None else run.config.progress
    return tqdm(total=run.total_steps, initial=run.state.step, disable=not (shown and run.processes.is_main),
                desc="training", unit="step")  # fmt: skip


def _stop_if_diverged(run: _Run, loss: float, grad_norm: float | None, batches_in_step: int) -> bool:
    """Stop before the optimizer step if the loss or gradients are broken (``check_step``); False if suspect."""
    health = check_step(loss, grad_norm, run.history, run.config.explosion_factor, run.processes.scaler_skips_inf)
    if health.stop is not None:
        if run.checkpoints is not None:
            run.checkpoints.pending = None  # its weights produced this step: not good
        last = run.state.batch_in_epoch
        where = (run.state.step + 1, run.state.epoch, (last - batches_in_step + 1, last))
        raise TrainingDivergedError(divergence_message(health.stop, *where, run.checkpoint_dir), run.history)
    if health.suspect is not None and run.checkpoint_dir is not None and run.processes.is_main:
        warnings.warn(f"Step {run.state.step + 1}: {health.suspect}; no checkpoint is taken around it.", stacklevel=3)
    return health.suspect is None


def _evaluate_checkpoint_and_decide_to_stop(run: _Run, healthy: bool, on_step) -> bool:
    """After an optimizer step: evaluate and checkpoint when due, call ``on_step``; True to stop training."""
    last = run.state.step >= run.total_steps
    stop = _evaluate_if_due(run, last) or last
    _checkpoint_if_due(run, stop, healthy)
    if on_step is not None:
        on_step(run.state.step, run.history)
    run.step_started = time.perf_counter()
    return stop


def _evaluate_if_due(run: _Run, last: bool) -> bool:
    if run.eval_fn is None or not (run.state.step % run.eval_every == 0 or last):
        return False
    stop = _evaluate(run)
    run.history.stopped_early = stop and run.state.step < run.total_steps
    return stop


def _evaluate(run: _Run) -> bool:
    """Run eval_fn in eval mode, log it, track the best weights; return True to stop early."""
    started = time.perf_counter()
    with eval_mode(run.model):
        metrics = run.eval_fn(run.model)
    run.history.eval_seconds += time.perf_counter() - started
    run.history.evaluations.append({"step": run.state.step, "epoch": run.epoch_of(run.state.step), **metrics})
    return _track_best(run, metrics)


def _track_best(run: _Run, metrics: dict) -> bool:
    name, config = run.config.early_stopping_metric, run.config
    if name is None:
        return False
    if name not in metrics:
        raise KeyError(f"eval_fn returned {sorted(metrics)}, not the early-stopping metric {name!r}")
    value, best = float(metrics[name]), run.history.best_metric
    if best is None or (value > best if config.greater_is_better else value < best):
        run.history.best_metric, run.history.best_step = value, run.state.step
        run.state.bad_evals = 0
        if config.restore_best:
            run.best_weights = clone_state_dict(run.processes.unwrap(run.model))
            run.best_version += 1
    else:
        run.state.bad_evals += 1
    return config.patience is not None and run.state.bad_evals >= config.patience


def _checkpoint_if_due(run: _Run, last: bool, healthy: bool) -> None:
    """At the end, write a checkpoint now; every ``checkpoint_every`` steps, hold it until the next step's check."""
    every = run.config.checkpoint_every
    if run.checkpoints is None or not healthy or not (last or (every and run.state.step % every == 0)):
        return
    if last:
        _ensure_finite_weights(run)
        run.checkpoints.write(_snapshot(run), run.model, run.optimizer)
    else:
        run.checkpoints.pending = _snapshot(run)


def _snapshot(run: _Run) -> Snapshot:
    return Snapshot(
        state=dataclasses.replace(run.state),
        history=dataclasses.asdict(run.history),
        rng=rng_state(),
        epoch_start_rng=run.epochs.epoch_start_rng,
        scheduler=run.scheduler.state_dict() if run.scheduler is not None else None,
        best_weights=run.best_weights,
        best_version=run.best_version,
    )


def _ensure_finite_weights(run: _Run) -> None:
    """No later step tests the final weights: at least they must be finite."""
    if not all(bool(torch.isfinite(p).all()) for p in run.model.parameters()):
        problem = "the weights became non-finite in the last step"
        batch = run.state.batch_in_epoch
        message = divergence_message(problem, run.state.step, run.state.epoch, (batch, batch), run.checkpoint_dir)
        raise TrainingDivergedError(message, run.history)

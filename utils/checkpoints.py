"""Checkpoints of a training run: written atomically, committed last, loaded safely, resumed exactly.

A checkpoint holds the model, optimizer, scheduler, gradient scaler, random number generators and
the position in the data: tensors in files that load with ``torch.load(weights_only=True)``, plain
data in JSON. Each checkpoint is a complete folder (``step-000012``, with the best weights so far
inside), written under a temporary name, fsynced and renamed; the file ``latest.json`` then points
to it (the commit), and only after that is the previous folder deleted. A checkpoint due after step
N is held back until step N+1's check has shown that the weights of step N give a healthy loss and
gradient, so a catastrophic step is never saved as "last good".
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.atomic_files import atomic_write, fsync_dir
from utils.training_state import LoopState, TrainingHistory

LATEST_FILE = "latest.json"  # names the newest complete checkpoint folder: written last, it commits one
STATE_FILE = "trainer_state.json"  # loop counters and history (plain data)
TENSORS_FILE = "training_state.pt"  # model, optimizer and gradient scaler (one process, no Accelerator)
SCHEDULER_FILE = "scheduler.pt"
BEST_MODEL_FILE = "best_model.pt"
RNG_FILE = "rng_state_{rank}.pt"  # random states, one file per process
OLD_CHECKPOINT_FILE = "checkpoint.pt"  # the earlier single-pickle format, refused when loading
CHECKPOINT_FORMAT = 2
CHECKPOINT_FIX = (
    "Delete the checkpoint folder and train again (resume=False), or put back an intact copy of it. Do not "
    "load it with torch.load(weights_only=False): that runs whatever code a file holds."
)


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, damaged or foreign. The message names the file and the safe fix."""


# --------------------------------------------------------------- single files


def save_tensors(obj: object, path: Path) -> None:
    """``torch.save`` atomically: a crash while writing leaves the previous file intact."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def load_tensors(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU; a missing, damaged or foreign file raises
    CheckpointError naming the file, the cause and the safe fix (never ``weights_only=False``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the checkpoint in {path.parent} is incomplete. {CHECKPOINT_FIX}") from None
    except pickle.UnpicklingError:
        cause = "it holds Python objects other than tensors and plain data (a foreign or tampered file)"
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        cause = f"it is truncated or damaged ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
    raise CheckpointError(f"{path} cannot be loaded safely: {cause}. {CHECKPOINT_FIX}")


def _plain_number(value: object) -> object:
    """JSON for NumPy and torch scalars that metrics often are; anything else is an error."""
    if isinstance(value, np.generic) or (torch.is_tensor(value) and value.numel() == 1):
        return value.item()
    raise TypeError(f"A checkpoint stores the history as JSON; {type(value).__name__} values are not supported.")


def write_json(data: dict, path: Path) -> None:
    """Plain data as JSON, atomically."""
    atomic_write(path, lambda handle: json.dump(data, handle, default=_plain_number, indent=1), text=True)


def read_json(path: Path) -> dict:
    """A JSON file of a checkpoint as a dict, or CheckpointError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the checkpoint in {path.parent} is incomplete. {CHECKPOINT_FIX}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}): the file is damaged. {CHECKPOINT_FIX}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds {type(data).__name__}, not a JSON object. {CHECKPOINT_FIX}")
    return data


# ------------------------------------------------------- finding a checkpoint


def _folder_named_in(latest: Path) -> str:
    """The checkpoint folder ``latest.json`` names: a plain folder name inside its own folder, nothing else."""
    name = read_json(latest).get("folder")
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise CheckpointError(
            f"{latest} names the folder {name!r}, which is not a folder inside {latest.parent}: the file was "
            f"edited or comes from elsewhere, and a checkpoint is only read from its own folder. {CHECKPOINT_FIX}"
        )
    return name


def latest_folder(checkpoint_dir: str | Path) -> Path | None:
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


def checkpoint_step(checkpoint_dir: str | Path) -> int | None:
    """The optimizer step of the newest checkpoint in ``checkpoint_dir`` (None if there is none), cheaply."""
    latest = Path(checkpoint_dir) / LATEST_FILE
    return int(read_json(latest)["step"]) if latest.exists() else None


def written_by_accelerate(folder: Path) -> bool:
    """Whether an Accelerator's ``save_state`` wrote the checkpoint (then its files replace ``training_state.pt``)."""
    return any(any(folder.glob(pattern)) for pattern in ("optimizer*", "model*.safetensors", "pytorch_model*"))


def load_checkpoint(checkpoint_dir: str | Path) -> dict | None:
    """Everything in the newest checkpoint of ``checkpoint_dir``, or None if there is none.

    Returns a dict with ``state`` (loop counters, a dict), ``history`` (TrainingHistory),
    ``folder`` and the tensors (``training`` for a one-process run, ``scheduler``,
    ``best_model``). Every file is read with ``torch.load(weights_only=True)``, which cannot
    run code, so a checkpoint folder from elsewhere is safe to open; a missing
    ``training_state.pt`` (one-process checkpoints), a damaged or a foreign file raises
    ``CheckpointError`` naming the file, as resuming does.
    """
    folder = latest_folder(checkpoint_dir)
    if folder is None:
        return None
    saved = read_json(folder / STATE_FILE)
    tensors = {}
    for key, name in [("training", TENSORS_FILE), ("scheduler", SCHEDULER_FILE), ("best_model", BEST_MODEL_FILE)]:
        path = folder / name
        required = name == TENSORS_FILE and not written_by_accelerate(folder)
        tensors[key] = load_tensors(path) if path.exists() or required else None
    return {"state": saved["state"], "history": TrainingHistory(**saved["history"]), "folder": folder, **tensors}


# ------------------------------------------------------------ learning rates


def learning_rates(optimizer, scheduler) -> list[float]:
    """The base (peak) learning rate of each parameter group."""
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        return list(scheduler.base_lrs)
    return [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]


def set_learning_rates(optimizer, scheduler, rates: list[float]) -> None:
    """Give a loaded optimizer and scheduler new base learning rates, keeping the schedule's position.

    The current rate of each group is scaled by new/old base rate, so a warmup or decay
    continues from where it was, at the new height. Used when resuming with a new rate.
    """
    for group, base, rate in zip(optimizer.param_groups, learning_rates(optimizer, scheduler), rates):
        if rate == base:
            continue
        group["lr"] = group["lr"] * rate / base if base else rate
        if "initial_lr" in group:
            group["initial_lr"] = rate
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = list(rates)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


# ---------------------------------------------------------- a run's checkpoints


@dataclass
class Snapshot:
    """What a checkpoint of step N holds besides the model and optimizer, taken right after step N."""

    state: LoopState
    history: dict
    rng: dict
    epoch_start_rng: dict | None
    scheduler: dict | None
    best_weights: dict | None
    best_version: int  # changes whenever the best weights do


class Checkpoints:
    """The checkpoint folder of one run: a checkpoint held back until the next step proves it, writing, resuming.

    ``processes`` (utils.processes) saves and loads the model and optimizer, in one process or many.
    """

    def __init__(self, folder: Path, processes):
        self.folder, self.processes = Path(folder), processes
        self.pending: Snapshot | None = None  # a checkpoint waiting for the next step to prove it healthy
        self.best_file: tuple[int, Path] | None = None  # (best_version, the committed file that holds them)

    def commit_pending(self, healthy: bool, model, optimizer) -> None:
        """Write the held-back checkpoint if its weights have just given a healthy step; else drop it."""
        snapshot, self.pending = self.pending, None
        if snapshot is not None and healthy:
            self.write(snapshot, model, optimizer)

    def write(self, snapshot: Snapshot, model, optimizer) -> None:
        """Write a complete checkpoint folder, then commit it in ``latest.json``, then delete the previous one."""
        processes, name = self.processes, f"step-{snapshot.state.step:06d}"
        temporary = self.folder / f".{name}.tmp"
        if processes.is_main:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        processes.wait()
        processes.save(model, optimizer, temporary)
        rng = snapshot.rng | {"epoch_start": snapshot.epoch_start_rng}
        save_tensors(rng, temporary / RNG_FILE.format(rank=processes.process_index))
        processes.wait()
        if processes.is_main:
            self._write_plain_files(snapshot, temporary)
            final = self._commit(temporary, name, snapshot.state.step)
            if snapshot.best_weights is not None:
                self.best_file = (snapshot.best_version, final / BEST_MODEL_FILE)
        processes.wait()

    def _write_plain_files(self, snapshot: Snapshot, folder: Path) -> None:
        if snapshot.scheduler is not None:
            save_tensors(snapshot.scheduler, folder / SCHEDULER_FILE)
        if snapshot.best_weights is not None:
            self._save_best(snapshot, folder / BEST_MODEL_FILE)
        state = {"format": CHECKPOINT_FORMAT, "state": dataclasses.asdict(snapshot.state),
                 "num_processes": self.processes.num_processes, "history": snapshot.history}  # fmt: skip
        write_json(state, folder / STATE_FILE)

    def _save_best(self, snapshot: Snapshot, path: Path) -> None:
        """The best weights: a hard link to the previous checkpoint's copy when they have not changed."""
        previous = self.best_file
        if previous is not None and previous[0] == snapshot.best_version and previous[1].exists():
            try:
                os.link(previous[1], path)
            except OSError:
                shutil.copy2(previous[1], path)
        else:
            save_tensors(snapshot.best_weights, path)

    def _commit(self, temporary: Path, name: str, step: int) -> Path:
        final, suffix = self.folder / name, 1
        while final.exists():
            final, suffix = self.folder / f"{name}-{suffix}", suffix + 1
        fsync_dir(temporary)
        os.replace(temporary, final)
        fsync_dir(self.folder)
        write_json({"step": step, "folder": final.name}, self.folder / LATEST_FILE)
        for old in self.folder.iterdir():
            if old.is_dir() and old != final and (old.name.startswith("step-") or old.name.endswith(".tmp")):
                shutil.rmtree(old, ignore_errors=True)
        return final

    def resume(self, model, optimizer, scheduler) -> dict:
        """Load the newest checkpoint into the model, optimizer and scheduler, keeping the learning rates they
        were built with; return its ``state``, ``history``, ``rng`` and ``best_weights`` (None if none)."""
        folder = latest_folder(self.folder)
        if folder is None:
            raise CheckpointError(
                f"resume=True, but {self.folder} holds no checkpoint ({LATEST_FILE} is missing): nothing "
                "to resume. Check the folder's name, or pass resume=False to start a new run."
            )
        saved = read_json(folder / STATE_FILE)
        if saved["num_processes"] != self.processes.num_processes:
            raise ValueError(
                f"The checkpoint in {folder} was written by {saved['num_processes']} processes; resume it with the same "
                f"number (now {self.processes.num_processes}), since each process's place in the data is saved."
            )
        requested = learning_rates(optimizer, scheduler)
        self.processes.load(model, optimizer, folder)
        if scheduler is not None:
            scheduler.load_state_dict(load_tensors(folder / SCHEDULER_FILE))
        set_learning_rates(optimizer, scheduler, requested)
        best = load_tensors(folder / BEST_MODEL_FILE) if (folder / BEST_MODEL_FILE).exists() else None
        if best is not None:
            self.best_file = (1, folder / BEST_MODEL_FILE)
        rng = load_tensors(folder / RNG_FILE.format(rank=self.processes.process_index))
        return {"state": saved["state"], "history": saved["history"], "rng": rng, "best_weights": best}

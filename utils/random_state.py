"""Capture and restore every random state a training step touches, so a resumed run continues exactly.

The global states (Python, NumPy, torch on the CPU and every GPU) decide dropout and anything else
drawn during a step; a DataLoader's own generators decide the order of its batches.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    """Every global random state, as tensors and plain data (loadable with ``weights_only=True``)."""
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured."""
    python_version, python_state, gauss = state["python"]
    random.setstate((python_version, tuple(python_state), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def loader_generators(loader) -> list[torch.Generator]:
    """The generators that decide a DataLoader's order (of the loader and its samplers, also under Accelerate)."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    owners = [
        loader,
        getattr(loader, "sampler", None),
        getattr(batch_sampler, "sampler", None),
        getattr(getattr(batch_sampler, "batch_sampler", None), "sampler", None),  # accelerate's BatchSamplerShard
    ]
    found = [getattr(owner, "generator", None) for owner in owners] + [getattr(loader, "synchronized_generator", None)]
    unique = []
    for generator in found:
        if isinstance(generator, torch.Generator) and all(generator is not g for g in unique):
            unique.append(generator)
    return unique


def loader_state(generators: list[torch.Generator]) -> dict:
    """The global states and the loader's generators, as they are when an epoch's iterator is made."""
    return {"global": rng_state(), "loaders": [generator.get_state() for generator in generators]}


def set_loader_state(state: dict, generators: list[torch.Generator]) -> None:
    """Restore what ``loader_state`` captured, so the next iterator repeats that epoch's order."""
    set_rng_state(state["global"])
    for generator, saved in zip(generators, state["loaders"]):
        generator.set_state(saved)

"""Device, precision, seeding, quiet mode and the versions report."""

import random
import warnings

import numpy as np
import pytest
import torch
import transformers

from utils import environment
from utils.environment import (
    MemoryTracker,
    pick_device,
    pick_precision,
    progress_bars_enabled,
    quiet,
    seed_everything,
    versions_report,
)


def test_cpu_machines_train_in_fp32():
    assert pick_device().type in {"cpu", "cuda"}
    precision = pick_precision("cpu")
    assert precision.name == "fp32" and precision.autocast_dtype is None and not precision.needs_grad_scaler


@pytest.mark.parametrize("bf16_supported, expected", [(True, "bf16"), (False, "fp16")])
def test_gpus_get_bf16_or_fp16_with_a_scaler(monkeypatch, bf16_supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    precision = pick_precision(torch.device("cuda"))
    assert precision.name == expected
    assert precision.needs_grad_scaler == (expected == "fp16")


def test_mps_is_used_only_on_request_and_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device().type == "cpu"
    with pytest.warns(UserWarning, match="wrong results"):
        assert pick_device(allow_mps=True).type == "mps"


def test_seed_everything_repeats_every_generator():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    assert seed_everything(7) is None  # no output in a notebook cell
    first = draw()
    seed_everything(7)
    assert draw() == first


def test_quiet_turns_off_progress_bars_and_the_training_loop_follows():
    try:
        transformers.utils.logging.enable_progress_bar()
        assert progress_bars_enabled()
        quiet()
        assert not progress_bars_enabled()
        import datasets

        assert datasets.is_progress_bar_enabled() is False
    finally:
        transformers.utils.logging.enable_progress_bar()
        transformers.logging.set_verbosity_warning()
        warnings.resetwarnings()


def test_versions_report_names_the_stack():
    report = versions_report()
    for package in ("python", "torch", "transformers", "datasets", "evaluate"):
        assert report[package] and report[package] != "not installed"


def test_colab_and_offline_detection(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert environment.hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not environment.hub_offline()
    monkeypatch.setenv("COLAB_RELEASE_TAG", "x")
    assert environment.in_colab()


def test_memory_tracker_sees_a_large_allocation():
    with MemoryTracker("cpu") as tracker:
        block = torch.ones(64, 1024, 1024)  # 256 MiB
        block.add_(1)
    assert 200 < tracker.peak_increase_mb < 2000

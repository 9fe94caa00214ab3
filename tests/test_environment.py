"""Device, precision, seeding, quiet mode and the versions report."""

import os
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
    assert pick_device().type == "cpu"  # the test command sets COURSE_DEVICE=cpu
    precision = pick_precision("cpu")
    assert precision.name == "fp32" and precision.autocast_dtype is None and not precision.needs_grad_scaler


GPUS = {"T4 (Colab's free GPU)": (7, 5), "V100": (7, 0), "A100": (8, 0), "RTX 4090": (8, 9), "H100": (9, 0)}


@pytest.mark.parametrize("gpu", GPUS)
def test_bf16_only_where_the_gpu_computes_it_natively(gpu):
    precision = environment.precision_for_gpu(GPUS[gpu])
    expected = "bf16" if GPUS[gpu] >= (8, 0) else "fp16"
    assert precision.name == expected
    assert precision.needs_grad_scaler == (expected == "fp16")
    assert precision.autocast_dtype == (torch.bfloat16 if expected == "bf16" else torch.float16)


@pytest.mark.parametrize("gpu", ["T4 (Colab's free GPU)", "A100", "H100"])
def test_pick_precision_reads_the_gpus_compute_capability(monkeypatch, gpu):
    # torch's is_bf16_supported() says True on a T4 (it counts emulation); it must not decide.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: GPUS[gpu])
    expected = "fp16" if gpu.startswith("T4") else "bf16"
    assert pick_precision(torch.device("cuda")).name == expected


def test_course_device_overrides_the_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert pick_device().type == "cpu"
    monkeypatch.setenv("COURSE_DEVICE", "auto")
    assert pick_device().type == "cuda"
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="COURSE_DEVICE='tpu'"):
        pick_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        pick_device()


def test_output_dir_follows_course_output_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_OUTPUT_DIR", raising=False)
    assert str(environment.output_dir("03_resume")) == "outputs/03_resume"
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    assert environment.output_dir("03_resume") == tmp_path / "03_resume"


def test_the_test_command_runs_the_cpu_reference_with_one_thread():
    # set by the root conftest.py before torch was imported
    assert os.environ["COURSE_DEVICE"] == "cpu"
    assert torch.get_num_threads() == int(os.environ.get("COURSE_TEST_THREADS", "1"))


def test_machine_report_says_what_differs_between_computers():
    report = environment.machine_report()
    assert {"processor", "cpu cores (logical)", "torch threads", "memory (GiB)"} <= report.keys()
    assert "cpu threads" not in environment.describe_environment()  # compared by nbval: machine-independent


def test_mps_is_used_only_on_request_and_with_a_warning(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "auto")
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


def test_quiet_turns_off_progress_bars_and_the_training_loop_follows(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "")  # restored after the test
    try:
        transformers.utils.logging.enable_progress_bar()
        assert progress_bars_enabled()
        quiet()
        assert not progress_bars_enabled()
        assert os.environ["TQDM_DISABLE"] == "1"  # read by accelerate's and TRL's tqdm wrappers
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


def test_saved_activation_memory_counts_what_backward_needs():
    from tiny import pad_collate, tiny_causal_lm, tiny_examples

    from utils.environment import saved_activation_mib

    model = tiny_causal_lm()
    examples = [{"input_ids": e["input_ids"], "labels": 0} for e in tiny_examples(8)]
    batch = pad_collate(examples)
    batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": batch["input_ids"]}
    full = saved_activation_mib(model, batch)
    assert full > 0
    assert all(p.grad is not None for p in model.parameters())  # the backward pass ran
    doubled = {key: torch.cat([value, value]) for key, value in batch.items()}
    assert abs(saved_activation_mib(model, doubled) / full - 2) < 0.25  # activations grow with the batch
    model.gradient_checkpointing_enable()
    model.train()
    assert saved_activation_mib(model, batch) < full  # checkpointing keeps less until the backward pass

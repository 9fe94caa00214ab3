"""The launchable fine-tuning script and the loop on two CPU processes (gloo on loopback)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env
from tiny import pad_collate, save_tiny_bert, tiny_classifier, tiny_examples

from utils.finetune import (
    CheckSettings,
    ClassifierTask,
    _covers,
    _disjoint,
    equivalence_check,
    launch_on_cpu,
    parse_options,
    resume_check,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "utils" / "launch_configs"
# The environment of a launched process: offline, gloo on the loopback interface.
LAUNCH_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "GLOO_SOCKET_IFNAME": "lo",
              "MASTER_ADDR": "127.0.0.1", "PYTHONPATH": str(ROOT)}  # fmt: skip


def tiny_task():
    """A tiny classifier without dropout; 64 training examples, 50 validation examples (uneven shards)."""
    return ClassifierTask(
        make_model=lambda: tiny_classifier(seed=0, dropout=0.0),
        train_set=datasets.Dataset.from_list(tiny_examples(64, seed=0)),
        eval_set=datasets.Dataset.from_list(tiny_examples(50, seed=3)),
        collate_fn=pad_collate,
    )


SETTINGS = CheckSettings(batch_size=8, num_epochs=2, learning_rate=1e-2)  # 4 steps per epoch with 2 processes


def test_two_processes_train_like_one_process_with_the_same_global_batch():
    report = equivalence_check(tiny_task(), SETTINGS, num_processes=2)
    assert report.optimizer_steps == 8
    assert report.max_abs_weight_difference <= 1e-6  # measured: 0.0 with one thread per process
    assert report.max_abs_loss_difference <= 1e-6
    assert report.shards_disjoint and report.shards_cover_the_epoch
    # 50 examples in batches of 8 on 2 processes: the last batch is padded; gathering drops the copies
    assert report.computed_predictions == 64  # 4 full batches of 8 each: 14 copies pad the uneven end
    assert report.gathered_predictions == report.validation_examples == 50
    assert report.metrics_equal


def test_the_check_runs_after_this_process_made_an_accelerator():
    """A notebook that ran a Trainer (which makes an Accelerator) can still launch the check."""
    from accelerate import Accelerator

    Accelerator(cpu=True)
    figures = launch_on_cpu(tiny_task(), CheckSettings(batch_size=8, num_epochs=1, learning_rate=1e-2), 2)
    assert figures["num_processes"] == 2 and len(figures["shards"]) == 2


def test_the_shard_checks_catch_overlaps_and_gaps():
    assert _disjoint([[[0, 1]], [[2, 3]]]) and not _disjoint([[[0, 1]], [[1, 2]]])
    assert _covers([[[0, 1]], [[2, 3]]], [[3, 2, 1, 0]]) and not _covers([[[0, 1]], [[2, 3]]], [[0, 1, 2, 4]])


def test_a_killed_two_process_run_resumes_from_save_state_to_identical_weights():
    report = resume_check(tiny_task(), SETTINGS, num_processes=2, kill_at_step=3, checkpoint_every=2)
    assert report.resumed_from_step == 2 and report.optimizer_steps == 8
    assert report.max_abs_weight_difference == 0.0 and report.same_losses


def test_options_parse_with_course_defaults_and_explain_bad_values(capsys):
    options = parse_options([])
    assert options.model == "minilm" and options.batch_size == 32 and options.fused and options.group_by_length
    options = parse_options(["--max-steps", "5", "--max-grad-norm", "none", "--no-fused", "--precision", "fp32",
                             "--dropout", "0", "--no-group-by-length", "--resume", "--checkpoint-every", "2"])  # fmt: skip
    assert options.max_steps == 5 and options.max_grad_norm is None and not options.fused
    assert options.dropout == 0.0 and not options.group_by_length and options.resume and options.checkpoint_every == 2
    with pytest.raises(SystemExit):
        parse_options(["--batch-size", "0"])
    assert "--batch-size must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_options(["--precision", "fp8"])


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_each_launch_config_parses_into_a_launch(name):
    path = CONFIGS / name
    config = load_config_from_file(str(path))
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "utils.finetune", "--max-steps", "1"])
    args, defaults, _ = _validate_launch_command(args)
    assert args.module and args.training_script == "utils.finetune" and args.training_script_args == ["--max-steps", "1"]
    kind = str(config.distributed_type).rsplit(".", 1)[-1]
    expected = {"single.yaml": "NO", "ddp.yaml": "MULTI_GPU", "multi_node.yaml": "MULTI_GPU", "fsdp.yaml": "FSDP",
                "deepspeed_zero2.yaml": "DEEPSPEED", "deepspeed_zero3.yaml": "DEEPSPEED"}  # fmt: skip
    assert kind == expected[name]
    if kind == "FSDP":
        environment = prepare_multi_gpu_env(args)
        assert environment["FSDP_VERSION"] == "2" and environment["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "BertLayer"
    if kind == "DEEPSPEED":
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, environment = prepare_deepspeed_cmd_env(args)
        assert environment["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == name[-6]
    if name == "multi_node.yaml":
        assert config.num_machines == 2 and config.main_process_ip and config.main_process_port


def test_the_slurm_example_launches_the_same_script_on_every_node():
    script = (CONFIGS / "slurm.sbatch").read_text()
    assert script.startswith("#!/bin/bash") and "#SBATCH --nodes=2" in script
    for flag in ("--num_machines", "--machine_rank \\$SLURM_NODEID", "--main_process_ip", "-m utils.finetune"):
        assert flag in script
    assert subprocess.run(["bash", "-n", CONFIGS / "slurm.sbatch"], check=False).returncode == 0  # valid shell syntax


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory):
    """A tiny random BERT with MiniLM's vocabulary and tokenizer, saved like a real model."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def script_options(model, output, *extra):
    return ["--model", str(model), "--max-train-examples", "32", "--max-eval-examples", "9", "--batch-size", "8",
            "--max-length", "32", "--output-dir", str(output), *extra]  # fmt: skip


def last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_the_script_runs_one_step_in_one_process(tiny_model_folder, tmp_path):
    command = [sys.executable, "-m", "utils.finetune", *script_options(tiny_model_folder, tmp_path, "--max-steps", "1")]
    done = subprocess.run(command, cwd=ROOT, env=LAUNCH_ENV, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = last_json_line(done.stdout)
    assert metrics["processes"] == 1 and metrics["optimizer_steps"] == 1 and metrics["validation_examples"] == 9
    assert (tmp_path / "model" / "config.json").exists() and json.loads((tmp_path / "metrics.json").read_text())


def test_the_script_runs_unchanged_under_torchrun_and_resumes(tiny_model_folder, tmp_path):
    """From a shell: two processes, a checkpoint every step, then a resume that continues from it."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    first = script_options(tiny_model_folder, tmp_path, "--max-steps", "1", "--checkpoint-every", "1")
    done = subprocess.run([*torchrun, "-m", "utils.finetune", *first], cwd=ROOT, env=LAUNCH_ENV,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = last_json_line(done.stdout)
    assert metrics["processes"] == 2 and metrics["examples_seen"] == 16 and metrics["validation_examples"] == 9
    checkpoint = tmp_path / "checkpoints" / json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["folder"]
    assert {"model.safetensors", "optimizer.bin", "rng_state_0.pt", "rng_state_1.pt"} <= {p.name for p in checkpoint.iterdir()}
    again = script_options(tiny_model_folder, tmp_path, "--max-steps", "2", "--resume")
    done = subprocess.run([*torchrun, "-m", "utils.finetune", *again], cwd=ROOT, env=LAUNCH_ENV,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = last_json_line(done.stdout)
    assert metrics["resumed_from_step"] == 1 and metrics["optimizer_steps"] == 2


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--max-grad-norm", "-1"], r"--max-grad-norm must be a positive, finite number .*not -1.0: .*flips"),
        (["--learning-rate", "0"], r"--learning-rate must be a positive, finite number such as 5e-5, not 0.0"),
        (["--learning-rate", "nan"], r"--learning-rate must be .*not nan"),
        (["--learning-rate", "inf"], r"--learning-rate must be .*not inf"),
        (["--weight-decay", "-0.1"], r"--weight-decay must be a finite number of at least 0 .*not -0.1"),
        (["--dropout", "1.5"], r"--dropout must be a probability in \[0, 1\) such as 0.1, not 1.5"),
        (["--dropout", "-0.1"], r"--dropout must be a probability in \[0, 1\)"),
        (["--precision", "fp16", "--cpu"], r"--precision must be 'fp32' or 'auto' on a CPU, not 'fp16'"),
    ],
)
def test_the_script_refuses_settings_out_of_range_before_loading_anything(option, message, capsys):
    with pytest.raises(SystemExit) as exit_status:
        parse_options(option)
    assert exit_status.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def run_script(*arguments):
    command = [sys.executable, "-m", "utils.finetune", *arguments]
    return subprocess.run(command, cwd=ROOT, env=LAUNCH_ENV, capture_output=True, text=True, timeout=300, check=False)


def assert_one_line_error(done, message):
    """Exit status 2, the message on stderr's last line, no traceback, no metrics."""
    assert done.returncode == 2 and "Traceback" not in done.stderr and not done.stdout.strip(), done.stderr[-2000:]
    assert re.search(message, done.stderr.strip().splitlines()[-1]), done.stderr[-2000:]


def test_a_max_length_beyond_the_models_positions_is_refused_in_one_line(tiny_model_folder, tmp_path):
    done = run_script(*script_options(tiny_model_folder, tmp_path, "--max-length", "100", "--max-steps", "1"))
    assert_one_line_error(done, r"error: --max-length must be at most 64, the positions .* has, not 100")
    assert not (tmp_path / "model").exists()


def test_a_three_class_file_is_refused_in_one_line_before_training(tiny_model_folder, tmp_path):
    data = tmp_path / "three.csv"
    rows = [f"text {i} {['good', 'bad', 'meh'][i % 3]},{['positive', 'negative', 'neutral'][i % 3]}" for i in range(60)]
    data.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    done = run_script(*script_options(tiny_model_folder, tmp_path / "out", "--data", str(data), "--max-steps", "1"))
    assert_one_line_error(done, r"error: --data .*three.csv has 3 classes \(negative, neutral, positive\), but this "
                                r"script fine-tunes a classifier of 2 \(negative, positive\)")  # fmt: skip
    assert not (tmp_path / "out" / "model").exists()


def test_resume_without_a_checkpoint_is_one_line_not_a_fresh_run(tiny_model_folder, tmp_path):
    done = run_script(*script_options(tiny_model_folder, tmp_path, "--max-steps", "1", "--resume"))
    assert_one_line_error(done, r"error: resume=True, but the checkpoint folder .*checkpoints does not exist")
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "model").exists()

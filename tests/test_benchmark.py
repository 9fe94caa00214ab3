"""The throughput benchmark times both sides over the same steps and reports a consistent ratio (its speed is
not asserted: that depends on the machine)."""

import pytest
import torch
from tiny import save_tiny_bert

from utils.benchmark import (
    BenchmarkSettings,
    _timing,
    compare,
    main,
    metric_speeds,
    time_course_loop,
    time_trainer,
    training_sentences,
)
from utils.models import load_tokenizer


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    folder = save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), num_layers=1)
    return BenchmarkSettings(model=str(folder), num_examples=48, batch_size=8, max_length=16, rounds=1)


def test_step_times_are_the_gaps_between_step_ends():
    timing = _timing([1.0, 1.5, 2.5], started=0.5, examples=30)
    assert timing.step_seconds == [0.5, 1.0] and timing.examples_per_second == 15.0


def test_both_sides_time_one_epoch_of_the_same_steps(settings):
    tokenizer = load_tokenizer(settings.model)
    tokenized = training_sentences(settings, tokenizer)
    loop = time_course_loop(settings, tokenized, tokenizer, torch.device("cpu"))
    trainer = time_trainer(settings, tokenized, tokenizer, torch.device("cpu"))
    steps = len(tokenized) // settings.batch_size  # 48 examples in batches of 8: 6 optimizer steps each
    assert len(tokenized) == 48 and len(loop.step_seconds) == len(trainer.step_seconds) == steps - 1
    assert all(seconds > 0 for seconds in loop.step_seconds + trainer.step_seconds)
    assert 0 < loop.examples_per_second < float("inf") and 0 < trainer.examples_per_second < float("inf")


def test_the_ratio_is_the_loops_throughput_over_the_trainers(settings, capsys):
    reports = []
    result = compare(settings, report=reports.append)
    assert result["examples"] == 48 and len(reports) == 1 and reports[0].startswith("round 1: median step")
    ratio = result["utils_loop_examples_per_second"] / result["trainer_examples_per_second"]
    assert result["ratio"] == pytest.approx(ratio) and result["round_ratios"] == [result["ratio"]]
    assert len(result["whole_run_ratios"]) == 1 and result["whole_run_ratios"][0] > 0
    assert main(["--model", settings.model, "--num-examples", "24", "--batch-size", "8", "--rounds", "1"]) == 0
    assert "utils-loop/Trainer throughput ratio" in capsys.readouterr().out


def test_the_metric_benchmark_times_both_versions_of_macro_f1(capsys):
    seconds = metric_speeds(num_examples=50, num_resamples=20)
    assert set(seconds) == {"numpy", "scikit-learn"} and all(value > 0 for value in seconds.values())
    assert main(["--metrics"]) == 0 and "bootstrap of macro F1" in capsys.readouterr().out

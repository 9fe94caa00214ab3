"""Training throughput of the course's loop against transformers' ``Trainer``, on the same work.

    OMP_NUM_THREADS=2 python -m utils.benchmark            # about 2-3 minutes on 2 CPU cores
    python -m utils.benchmark --num-examples 2048 --rounds 5
    python -m utils.benchmark --metrics                     # the bootstrap's metric: NumPy or scikit-learn

Both sides fine-tune MiniLM for one epoch on the same training sentences, with batches of
similar length (group by length), batch size 32, AdamW with weight-decay groups, a linear
schedule with 10% warmup and gradient clipping at 1.0. The course's loop uses
``utils.training.make_adamw`` (the fused AdamW kernel where torch has one); ``Trainer``
keeps its own default optimizer (``adamw_torch_fused`` in transformers 5). The two sides
alternate in one process, each round loading a fresh model.

The figure is robust to a busy machine: each side records when each optimizer step ends
(an ``on_step`` callback, a ``TrainerCallback.on_step_end``); the time between two step
ends is one whole step, data loading included. Over all rounds, throughput is the batch
size divided by the median step time. Each round's ratio is Trainer's median step time
over the loop's (the two sides ran back to back), and the result is the median of the
rounds' ratios: above 1.0 the course's loop is faster. A burst of load from elsewhere slows
some steps or one round, which the medians ignore; whole-run rates (also printed) swing with it.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

from utils.environment import pick_device, pick_precision, quiet, seed_everything
from utils.models import DEFAULT_ENCODER


@dataclass
class BenchmarkSettings:
    model: str = DEFAULT_ENCODER
    num_examples: int = 512
    batch_size: int = 32
    max_length: int = 64
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_grad_norm: float = 1.0
    rounds: int = 5
    seed: int = 0


def training_sentences(settings: BenchmarkSettings, tokenizer):
    """The first ``num_examples`` training sentences of a seeded shuffle, tokenized (no padding)."""
    from utils.data import load_sentiment_dataset
    from utils.loaders import tokenize_for_classification

    train = load_sentiment_dataset()["train"].shuffle(seed=settings.seed)
    train = train.select(range(min(settings.num_examples, len(train))))
    return tokenize_for_classification(train, tokenizer, max_length=settings.max_length)


def _fresh_model(settings: BenchmarkSettings, device: torch.device):
    from utils.models import load_classifier

    seed_everything(settings.seed)
    return load_classifier(settings.model).to(device)


@dataclass
class Timing:
    step_seconds: list[float]  # the time between consecutive step ends
    examples_per_second: float  # the whole run, wall-clock


def _timing(step_ends: list[float], started: float, examples: int) -> Timing:
    gaps = [later - earlier for earlier, later in itertools.pairwise(step_ends)]
    return Timing(gaps, examples / (step_ends[-1] - started))


class _StepClock(TrainerCallback):
    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def time_course_loop(settings: BenchmarkSettings, tokenized, tokenizer, device) -> Timing:
    """Step times of ``utils.training.train`` for one epoch."""
    from transformers import get_linear_schedule_with_warmup

    from utils.loaders import make_train_loader
    from utils.training import make_adamw, train

    model = _fresh_model(settings, device)
    loader = make_train_loader(tokenized, tokenizer, settings.batch_size, seed=settings.seed, group_by_length=True)
    optimizer = make_adamw(model, settings.learning_rate, settings.weight_decay)
    steps = len(loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(settings.warmup_fraction * steps), steps)
    ends = []

    def clock(step: int, history) -> None:
        ends.append(time.perf_counter())

    started = time.perf_counter()
    history = train(model, loader, optimizer, scheduler=scheduler, num_epochs=1, max_grad_norm=settings.max_grad_norm,
                    precision=pick_precision(device), progress=False, on_step=clock)  # fmt: skip
    return _timing(ends, started, history.examples_seen)


def time_trainer(settings: BenchmarkSettings, tokenized, tokenizer, device) -> Timing:
    """Step times of ``transformers.Trainer`` (its default optimizer) for one epoch."""
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    model = _fresh_model(settings, device)
    steps = math.ceil(len(tokenized) / settings.batch_size)
    precision = pick_precision(device).name
    with tempfile.TemporaryDirectory() as folder:
        arguments = TrainingArguments(
            output_dir=folder, per_device_train_batch_size=settings.batch_size, num_train_epochs=1,
            learning_rate=settings.learning_rate, weight_decay=settings.weight_decay, lr_scheduler_type="linear",
            warmup_steps=math.ceil(settings.warmup_fraction * steps), max_grad_norm=settings.max_grad_norm,
            train_sampling_strategy="group_by_length", seed=settings.seed, bf16=precision == "bf16",
            fp16=precision == "fp16", eval_strategy="no", save_strategy="no", logging_strategy="no",
            disable_tqdm=True, report_to="none", dataloader_pin_memory=False, use_cpu=device.type == "cpu",
        )  # fmt: skip
        clock = _StepClock()
        trainer = Trainer(model=model, args=arguments, train_dataset=tokenized,
                          data_collator=DataCollatorWithPadding(tokenizer), callbacks=[clock])  # fmt: skip
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        trainer.train()
    return _timing(clock.ends, started, len(tokenized))


def compare(settings: BenchmarkSettings | None = None, report=print) -> dict:
    """Alternate the two sides for ``settings.rounds`` rounds; return their throughputs and the ratio."""
    from utils.models import load_tokenizer

    settings = settings or BenchmarkSettings()
    device = pick_device()
    tokenizer = load_tokenizer(settings.model)
    tokenized = training_sentences(settings, tokenizer)
    timings: dict = {time_course_loop: [], time_trainer: []}
    for round_number in range(1, settings.rounds + 1):
        first_loop = round_number % 2 == 1  # alternate who goes first, against drifts in machine load
        for side in [time_course_loop, time_trainer] if first_loop else [time_trainer, time_course_loop]:
            timings[side].append(side(settings, tokenized, tokenizer, device))
        loop, trainer = timings[time_course_loop][-1], timings[time_trainer][-1]
        report(f"round {round_number}: median step {statistics.median(loop.step_seconds):.3f} s (utils loop), "
               f"{statistics.median(trainer.step_seconds):.3f} s (Trainer); whole runs "
               f"{loop.examples_per_second:.1f} and {trainer.examples_per_second:.1f} examples/s")  # fmt: skip
    loop_step = statistics.median(t for run in timings[time_course_loop] for t in run.step_seconds)
    trainer_step = statistics.median(t for run in timings[time_trainer] for t in run.step_seconds)
    round_ratios = [
        statistics.median(b.step_seconds) / statistics.median(a.step_seconds)
        for a, b in zip(timings[time_course_loop], timings[time_trainer])
    ]
    return {
        "device": device.type,
        "threads": torch.get_num_threads(),
        "examples": len(tokenized),
        "utils_loop_examples_per_second": settings.batch_size / loop_step,
        "trainer_examples_per_second": settings.batch_size / trainer_step,
        "ratio": statistics.median(round_ratios),
        "round_ratios": round_ratios,
        "whole_run_ratios": [
            a.examples_per_second / b.examples_per_second for a, b in zip(timings[time_course_loop], timings[time_trainer])
        ],
    }


def metric_speeds(num_examples: int = 1007, num_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Seconds for one bootstrap interval of macro F1 (``num_resamples`` resamples of ``num_examples``
    predictions, 85% right): the course's NumPy ``macro_f1_score`` against scikit-learn's ``f1_score``."""
    import numpy as np
    from sklearn.metrics import f1_score

    from utils.evaluation import bootstrap_interval, macro_f1_score

    rng = np.random.default_rng(seed)
    references = rng.integers(0, 2, num_examples)
    predictions = np.where(rng.random(num_examples) < 0.85, references, 1 - references)
    metrics = {"numpy": macro_f1_score, "scikit-learn": lambda p, r: f1_score(r, p, average="macro")}
    seconds = {}
    for name, metric in metrics.items():
        started = time.perf_counter()
        bootstrap_interval(metric, predictions, references, num_resamples=num_resamples, seed=seed)
        seconds[name] = time.perf_counter() - started
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    defaults = BenchmarkSettings()
    parser = argparse.ArgumentParser(prog="python -m utils.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=defaults.model, help="model to fine-tune (default: %(default)s)")
    parser.add_argument("--num-examples", type=int, default=defaults.num_examples, help="training sentences")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--max-length", type=int, default=defaults.max_length)
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="rounds of both sides (median)")
    parser.add_argument("--metrics", action="store_true", help="time the bootstrap's macro F1 instead")
    args = parser.parse_args(argv)
    if args.metrics:
        seconds = metric_speeds()
        print(f"bootstrap of macro F1, 1,000 resamples of 1,007 predictions: NumPy {seconds['numpy']:.2f} s, "
              f"scikit-learn {seconds['scikit-learn']:.2f} s")  # fmt: skip
        return 0
    if min(args.num_examples, args.batch_size, args.max_length, args.rounds) < 1:
        parser.error("--num-examples, --batch-size, --max-length and --rounds must be at least 1")
    quiet()
    settings = BenchmarkSettings(model=args.model, num_examples=args.num_examples, batch_size=args.batch_size,
                                 max_length=args.max_length, rounds=args.rounds)  # fmt: skip
    result = compare(settings)
    print(f"{result['examples']} examples, {result['device']}, {result['threads']} threads, batch "
          f"{settings.batch_size}: utils loop {result['utils_loop_examples_per_second']:.1f} examples/s, Trainer "
          f"{result['trainer_examples_per_second']:.1f} examples/s (batch size / median step time)")  # fmt: skip
    print(f"ratios by round: {', '.join(f'{r:.3f}' for r in result['round_ratios'])} (median step times); "
          f"{', '.join(f'{r:.3f}' for r in result['whole_run_ratios'])} (whole runs)")  # fmt: skip
    print(f"utils-loop/Trainer throughput ratio (median of {settings.rounds} rounds): {result['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fine-tune the course's sentiment classifier from the command line, in one process or many.

One script for every launcher, unchanged::

    python -m utils.finetune --max-steps 50                          # one process: CPU or one GPU
    accelerate launch --config_file utils/launch_configs/ddp.yaml -m utils.finetune --num-epochs 3
    accelerate launch --num_processes 2 --multi_gpu -m utils.finetune --num-epochs 3
    torchrun --nproc_per_node 2 -m utils.finetune --num-epochs 3     # also on a CPU-only machine

It fine-tunes MiniLM on the movie-review sentences with the course's own pieces
(``utils.data``, ``utils.models``, ``utils.training.make_adamw``), lets an
``accelerate.Accelerator`` prepare the model, optimizer and loaders, and calls
``utils.training.train(..., accelerator=accelerator)``: the loop of notebook 03 runs in
every process, and there is no second copy of it. The Accelerator wraps the model in
DistributedDataParallel (or FSDP, or DeepSpeed, as the launch config says), gives each
process a disjoint shard of every epoch, averages the gradients in ``backward``, and
``evaluate_distributed`` gathers exactly one prediction per validation example.
``--batch-size`` is per process: the global batch is batch size x processes x
``--grad-accum-steps``. Only the main process writes files and prints.

Multi-node, a worked example: two machines with 4 GPUs each, 8 processes, the first
machine reachable at 10.0.0.1 from the second, port 29500 open between them, the
repository and ``--output-dir`` on a filesystem both machines share::

    # on machine 0 (10.0.0.1)
    accelerate launch --multi_gpu --num_machines 2 --machine_rank 0 --num_processes 8 \\
        --main_process_ip 10.0.0.1 --main_process_port 29500 -m utils.finetune --num-epochs 3
    # on machine 1: the same command with --machine_rank 1

``--num_processes`` counts all processes of all machines. utils/launch_configs/ has a
config file for each setup and a Slurm batch script (slurm.sbatch) that starts the same
command on every node of an allocation.

For notebooks and tests, ``equivalence_check``, ``resume_check`` and ``process_scaling``
run small 2-process CPU jobs with ``accelerate.debug_launcher`` and return figures.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from utils.environment import output_dir, seed_everything
from utils.evaluation import predict
from utils.models import DEFAULT_ENCODER
from utils.settings_checks import (
    SettingsError,
    check_dropout,
    check_learning_rate,
    check_max_grad_norm,
    check_max_length,
    check_precision_for_device,
    check_weight_decay,
)
from utils.training import TrainingConfig, TrainingHistory, clone_state_dict, make_adamw, train

PROG = "python -m utils.finetune"
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
TO_ACCELERATE = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class FinetuneOptions:
    """Everything the command line can set; ``python -m utils.finetune --help`` explains each."""

    model: str = DEFAULT_ENCODER
    tokenizer: str | None = None
    data: str = "movie-reviews"
    max_length: int = 128
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    batch_size: int = 32
    eval_batch_size: int = 64
    grad_accum_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    num_epochs: int = 1
    max_steps: int | None = None
    max_grad_norm: float | None = 1.0
    eval_every: int | None = None
    precision: str = "auto"
    dropout: float | None = None
    group_by_length: bool = True
    fused: bool = True
    seed: int = 0
    output_dir: str = field(default_factory=lambda: str(output_dir("finetune")))
    checkpoint_every: int | None = None
    resume: bool = False
    cpu: bool = False


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m utils.finetune``."""
    defaults = FinetuneOptions()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fine-tune a sentiment classifier (MiniLM by default) in one or many processes.",
        epilog="Launch with accelerate launch or torchrun for several processes; see the module docstring.",
    )
    add = parser.add_argument
    add("--model", default=defaults.model, help="packaged model name, saved folder or Hub id (default: %(default)s)")
    add("--tokenizer", help="tokenizer to use (default: the model's)")
    add("--data", default=defaults.data, help="sentiment data: 'movie-reviews', a CSV/JSONL file or folder")
    add("--max-length", type=int, default=defaults.max_length, help="tokens per sentence (default: %(default)s)")
    add("--max-train-examples", type=int, help="use only this many training sentences (default: all)")
    add("--max-eval-examples", type=int, help="use only this many validation sentences (default: all)")
    add("--batch-size", type=int, default=defaults.batch_size, help="per process (default: %(default)s)")
    add("--eval-batch-size", type=int, default=defaults.eval_batch_size, help="per process (default: %(default)s)")
    add("--grad-accum-steps", type=int, default=defaults.grad_accum_steps, help="batches per optimizer step")
    add("--learning-rate", type=float, default=defaults.learning_rate, help="peak rate (default: %(default)s)")
    add("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW weight decay (default: %(default)s)")
    add("--warmup-fraction", type=float, default=defaults.warmup_fraction, help="share of steps with rising rate")
    add("--num-epochs", type=int, default=defaults.num_epochs, help="passes over the data (default: %(default)s)")
    add("--max-steps", type=int, help="stop after this many optimizer steps")
    add("--max-grad-norm", type=_optional_float, default=defaults.max_grad_norm, help="clip to this norm ('none': off)")
    add("--eval-every", type=int, help="evaluate every N optimizer steps (default: at each epoch's end)")
    add("--precision", choices=PRECISION_CHOICES, default=defaults.precision,
        help="auto: the launcher's setting, else bf16/fp16 by GPU and fp32 on CPU")  # fmt: skip
    add("--dropout", type=float, help="override the model's dropout (0 for exact comparisons)")
    add("--no-group-by-length", dest="group_by_length", action="store_false", help="plain shuffled batches")
    add("--no-fused", dest="fused", action="store_false", help="torch's default AdamW instead of the fused one")
    add("--seed", type=int, default=defaults.seed, help="model head, data order and dropout (default: %(default)s)")
    add("--output-dir", default=defaults.output_dir,
        help="model, metrics and checkpoints (default: finetune in the course's output folder, "
             "$COURSE_OUTPUT_DIR or else outputs)")  # fmt: skip
    add("--checkpoint-every", type=int, help="checkpoint every N optimizer steps (in OUTPUT_DIR/checkpoints)")
    add("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT_DIR/checkpoints")
    add("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    return parser


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def parse_options(argv: Sequence[str] | None = None) -> FinetuneOptions:
    """Parse and check the command line; bad values exit with a message, as argparse does."""
    parser = build_parser()
    options = FinetuneOptions(**vars(parser.parse_args(argv)))
    positive = ["batch_size", "eval_batch_size", "grad_accum_steps", "num_epochs", "max_length"]
    for name in positive + ["max_steps", "max_train_examples", "max_eval_examples", "eval_every", "checkpoint_every"]:
        value = getattr(options, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    if not 0 <= options.warmup_fraction < 1:
        parser.error(f"--warmup-fraction must be in [0, 1), not {options.warmup_fraction}")
    try:
        check_option_ranges(options)
    except SettingsError as error:
        parser.error(str(error))
    return options


def check_option_ranges(options: FinetuneOptions) -> None:
    """The numbers and the precision in their allowed ranges (``SettingsError`` naming the option otherwise)."""
    check_learning_rate(options.learning_rate, "--learning-rate")
    check_weight_decay(options.weight_decay, "--weight-decay")
    check_max_grad_norm(options.max_grad_norm, "--max-grad-norm")
    if options.dropout is not None:
        check_dropout(options.dropout, "--dropout")
    check_precision_for_device(options.precision, options.cpu or not torch.cuda.is_available(), "--precision")


def check_max_length_fits(options: FinetuneOptions) -> None:
    """``--max-length`` within the model's position embeddings, read from its config before the model loads."""
    from transformers import AutoConfig

    from utils.models import resolve_model_source

    config = AutoConfig.from_pretrained(resolve_model_source(options.model))
    check_max_length(options.max_length, getattr(config, "max_position_embeddings", None), options.model, "--max-length")


def check_class_count(dataset, data: str) -> None:
    """The data's classes must be the classifier's: as many as ``SENTIMENT_LABELS``."""
    from utils.data import SENTIMENT_LABELS
    from utils.messages import listing

    feature = dataset.features["label"]
    names = [str(name) for name in feature.names] if hasattr(feature, "names") else sorted(set(dataset["label"]))
    if len(names) != len(SENTIMENT_LABELS):
        raise SettingsError(
            f"--data {data} has {len(names)} classes ({listing(names)}), but this script fine-tunes a classifier "
            f"of {len(SENTIMENT_LABELS)} ({', '.join(SENTIMENT_LABELS)}). Give data with exactly "
            f"{len(SENTIMENT_LABELS)} classes."
        )


# ------------------------------------------------------------- the accelerator


def make_accelerator(options: FinetuneOptions):
    """An Accelerator for this launch: CPU when asked or when no GPU exists, precision from ``--precision``.

    Under torchrun or accelerate launch on a machine without GPUs, ``cpu=True`` is what
    makes Accelerate join the processes into one gloo group; without it every process
    would train alone on all the data.
    """
    from accelerate import Accelerator, PartialState

    cpu = options.cpu or not torch.cuda.is_available()
    precision = options.precision
    if precision == "auto" and not os.environ.get("ACCELERATE_MIXED_PRECISION"):
        from utils.environment import pick_precision

        precision = "fp32" if cpu else pick_precision(PartialState(cpu=cpu).device).name
    mixed = None if precision == "auto" else TO_ACCELERATE[precision]
    accelerator = Accelerator(cpu=cpu, mixed_precision=mixed)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise RuntimeError(
            f"{launched} processes were launched, but Accelerate formed a group of {accelerator.num_processes}: "
            "each would train alone. Launch with accelerate launch or torchrun, and pass --cpu on a machine "
            "without GPUs."
        )
    return accelerator


def _is_sharded(accelerator) -> bool:
    return str(accelerator.distributed_type).rsplit(".", 1)[-1] in ("FSDP", "DEEPSPEED")


# ---------------------------------------------------------- distributed eval


def evaluate_distributed(accelerator, model: torch.nn.Module, loader) -> dict[str, float]:
    """Mean loss and accuracy over all processes' shards: ``utils.evaluation.evaluate_classifier``, distributed.

    ``examples`` counts the predictions kept (one per example); ``computed`` those the
    processes made, including the copies that padded uneven last batches.
    """
    logits, labels, loss = predict(model, loader, accelerator)
    computed = sum(int(batch["labels"].shape[0]) for batch in _batches_seen(loader))
    computed = int(accelerator.reduce(torch.tensor(computed, device=accelerator.device), reduction="sum"))
    return {"loss": loss, "accuracy": float((logits.argmax(-1) == labels).mean()), "examples": len(labels),
            "computed": computed}  # fmt: skip


def _batches_seen(loader):
    """The batch sizes of this process's shard, without running the model (the sampler alone)."""
    sampler = getattr(loader, "batch_sampler", None)
    return ({"labels": torch.empty(len(indices))} for indices in sampler) if sampler is not None else iter(loader)


# -------------------------------------------------------------- the script


def load_course_data(options: FinetuneOptions, tokenizer):
    """Tokenized training and validation splits, cut to ``--max-*-examples`` (a seeded random subset)."""
    from utils.data import load_sentiment_dataset
    from utils.loaders import tokenize_for_classification

    splits = load_sentiment_dataset(options.data)
    check_class_count(splits["train"], options.data)
    tokenized = tokenize_for_classification(splits, tokenizer, options.max_length)
    train_set, eval_set = tokenized["train"], tokenized["validation"]
    if options.max_train_examples is not None:
        train_set = train_set.shuffle(seed=options.seed).select(range(min(options.max_train_examples, len(train_set))))
    if options.max_eval_examples is not None:
        eval_set = eval_set.shuffle(seed=options.seed).select(range(min(options.max_eval_examples, len(eval_set))))
    return train_set, eval_set


def training_config(options: FinetuneOptions, checkpoints: Path | None) -> TrainingConfig:
    return TrainingConfig(
        num_epochs=options.num_epochs,
        max_steps=options.max_steps,
        grad_accum_steps=options.grad_accum_steps,
        max_grad_norm=options.max_grad_norm,
        eval_every=options.eval_every,
        checkpoint_dir=checkpoints,
        checkpoint_every=options.checkpoint_every,
        resume=options.resume,
    )


def _linear_schedule(optimizer, options: FinetuneOptions, config: TrainingConfig, loader_length: int):
    """Linear warmup and decay over the optimizer steps that ``train`` will take in each process."""
    from transformers import get_linear_schedule_with_warmup

    total = math.ceil(loader_length / config.grad_accum_steps) * config.num_epochs
    total = min(total, config.max_steps) if config.max_steps is not None else total
    return get_linear_schedule_with_warmup(optimizer, math.ceil(options.warmup_fraction * total), max(total, 1))


def finetune(options: FinetuneOptions) -> dict:
    """Fine-tune as ``options`` say, in however many processes were launched; returns the final metrics."""
    from utils.loaders import make_eval_loader, make_train_loader
    from utils.models import load_classifier, load_tokenizer

    check_option_ranges(options)
    check_max_length_fits(options)
    accelerator = make_accelerator(options)
    tokenizer = load_tokenizer(options.tokenizer or options.model)
    with accelerator.main_process_first():  # the main process fills the datasets cache first
        train_set, eval_set = load_course_data(options, tokenizer)
    seed_everything(options.seed)  # the same new classifier head in every process
    dropout = {} if options.dropout is None else {"hidden_dropout_prob": options.dropout,
                                                  "attention_probs_dropout_prob": options.dropout}  # fmt: skip
    model = load_classifier(options.model, **dropout)
    optimizer = make_adamw(model, options.learning_rate, options.weight_decay, fused=None if options.fused else False)
    train_loader = make_train_loader(train_set, tokenizer, options.batch_size, options.seed, options.group_by_length)
    eval_loader = make_eval_loader(eval_set, tokenizer, options.eval_batch_size)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)
    output = Path(options.output_dir)
    checkpoints = output / "checkpoints" if options.checkpoint_every or options.resume else None
    config = training_config(options, checkpoints)
    scheduler = _linear_schedule(optimizer, options, config, len(train_loader))
    history = train(model, train_loader, optimizer, config, scheduler=scheduler, accelerator=accelerator,
                    eval_fn=lambda m: evaluate_distributed(accelerator, m, eval_loader))  # fmt: skip
    metrics = _summary(history, accelerator.num_processes)
    _save_model(accelerator, model, tokenizer, output, metrics)
    return metrics


def _summary(history: TrainingHistory, num_processes: int) -> dict:
    last = history.evaluations[-1] if history.evaluations else {}
    return {
        "processes": num_processes,
        "optimizer_steps": len(history.steps),
        "examples_seen": history.examples_seen,
        "examples_per_second": round(history.examples_per_second, 2),
        "train_loss_last_step": history.steps[-1]["loss"] if history.steps else None,
        "validation_loss": last.get("loss"),
        "validation_accuracy": last.get("accuracy"),
        "validation_examples": last.get("examples"),
        "resumed_from_step": history.resumed_from_step,
    }


def _save_model(accelerator, model, tokenizer, output: Path, metrics: dict) -> None:
    """The main process saves the trained model (gathered from shards if sharded), tokenizer and metrics."""
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)  # every process: sharded weights are gathered
    if accelerator.is_main_process:
        folder = output / "model"
        accelerator.unwrap_model(model).save_pretrained(folder, state_dict=state_dict)
        tokenizer.save_pretrained(folder)
        (output / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    accelerator.wait_for_everyone()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: fine-tune, print the metrics (main process), return the exit status.

    A bad option exits with status 2 and argparse's message; so does an error the course's
    checks raise later (bad data, a missing checkpoint, a diverged run): one line on stderr
    that says what to fix, without a Python traceback.
    """
    from utils.environment import quiet

    options = parse_options(argv)
    quiet()
    try:
        metrics = finetune(options)
    except _course_errors() as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(metrics))
    return 0


def _course_errors() -> tuple[type[Exception], ...]:
    """The errors whose message already says what to fix (the course's checks raise ValueError subclasses)."""
    from utils.assets import AssetError
    from utils.models import ModelLoadError
    from utils.training import TrainingDivergedError

    return (ValueError, AssetError, ModelLoadError, TrainingDivergedError)


# ------------------------------------------- checks on several CPU processes


@dataclass
class ClassifierTask:
    """What a check trains: a seeded model factory, tokenized splits and a collate function."""

    make_model: Callable[[], torch.nn.Module]
    train_set: object  # a datasets.Dataset with input_ids (and attention_mask) and labels
    eval_set: object
    collate_fn: Callable[[list[dict]], dict]


def course_task(num_train: int = 256, num_eval: int = 100, max_length: int = 64, seed: int = 0) -> ClassifierTask:
    """MiniLM without dropout on a seeded subset of the movie-review sentences, for the checks below."""
    from transformers import DataCollatorWithPadding

    from utils.models import load_classifier, load_tokenizer

    tokenizer = load_tokenizer(DEFAULT_ENCODER)
    options = FinetuneOptions(max_length=max_length, max_train_examples=num_train, max_eval_examples=num_eval, seed=seed)
    train_set, eval_set = load_course_data(options, tokenizer)

    def make_model() -> torch.nn.Module:
        seed_everything(seed)
        return load_classifier(DEFAULT_ENCODER, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

    return ClassifierTask(make_model, train_set, eval_set, DataCollatorWithPadding(tokenizer))


class ExampleIdCollator:
    """Wraps a collate function: records each batch's ``example_id`` values, then drops them."""

    def __init__(self, collate_fn: Callable[[list[dict]], dict]):
        self.collate_fn = collate_fn
        self.batches: list[list[int]] = []

    def __call__(self, examples: list[dict]) -> dict:
        self.batches.append([int(e["example_id"]) for e in examples])
        return self.collate_fn([{k: v for k, v in e.items() if k != "example_id"} for e in examples])


@dataclass
class CheckSettings:
    """The run a check makes: per-process batch size, length, optimizer, checkpoints."""

    batch_size: int = 8
    num_epochs: int = 2
    learning_rate: float = 5e-5
    group_by_length: bool = True
    seed: int = 0
    eval_batch_size: int = 8
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    kill_at_step: int | None = None  # SIGKILL every process after this step


@dataclass
class _Trained:
    weights: dict[str, torch.Tensor]
    history: TrainingHistory
    epochs_of_ids: list[list[int]]  # the example ids this process trained on, per epoch
    metrics: dict | None


def train_task(task: ClassifierTask, settings: CheckSettings, accelerator=None, grad_accum_steps: int = 1) -> _Trained:
    """Train ``task`` with ``utils.training.train``: under ``accelerator`` in every process, or in this one."""
    from transformers import get_linear_schedule_with_warmup

    from utils.loaders import shuffled_loader

    model = task.make_model()
    optimizer = make_adamw(model, settings.learning_rate)
    train_set = task.train_set.add_column("example_id", list(range(len(task.train_set))))
    collator = ExampleIdCollator(task.collate_fn)
    loader = shuffled_loader(train_set, settings.batch_size, collator, settings.seed, settings.group_by_length)
    eval_loader = torch.utils.data.DataLoader(task.eval_set, batch_size=settings.eval_batch_size,
                                              collate_fn=task.collate_fn)  # fmt: skip
    if accelerator is not None:
        model, optimizer, loader, eval_loader = accelerator.prepare(model, optimizer, loader, eval_loader)
    steps = math.ceil(len(loader) / grad_accum_steps) * settings.num_epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, steps // 10), steps)
    config = TrainingConfig(num_epochs=settings.num_epochs, grad_accum_steps=grad_accum_steps, progress=False,
                            checkpoint_dir=settings.checkpoint_dir, checkpoint_every=settings.checkpoint_every,
                            resume=settings.resume)  # fmt: skip
    history = train(model, loader, optimizer, config, scheduler=scheduler, accelerator=accelerator,
                    on_step=_killer(settings.kill_at_step))  # fmt: skip
    metrics = evaluate_distributed(accelerator, model, eval_loader) if accelerator is not None else None
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    per_epoch = len(loader)  # batches of this process per epoch
    batches = collator.batches
    ids = [list(itertools.chain(*batches[i : i + per_epoch])) for i in range(0, len(batches), per_epoch)]
    return _Trained(clone_state_dict(unwrapped), history, ids, metrics)


def _killer(step: int | None):
    if step is None:
        return None

    def kill_at(current: int, history: TrainingHistory) -> None:
        if current == step:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no exception: as if the machine failed

    return kill_at


def _worker(task: ClassifierTask, settings: CheckSettings, out_dir: str) -> None:
    """One process of a check (started by ``accelerate.debug_launcher``): train, gather, save figures."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import gather_object

    # One thread per process: 2 processes on 2 cores. After a fork, a process that starts
    # more OpenMP threads than one can hang when its parent had used OpenMP already.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    # A fork copies Accelerate's process-wide state; if the parent had made an Accelerator (a
    # Trainer does), this process would inherit its one-process setup. Start this copy afresh.
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator = Accelerator(cpu=True)
    trained = train_task(task, settings, accelerator)
    shards = gather_object([trained.epochs_of_ids])  # one entry per process
    if accelerator.is_main_process:
        torch.save(trained.weights, Path(out_dir) / "weights.pt")
        summary = {
            "shards": shards,
            "metrics": trained.metrics,
            "losses": trained.history.column("loss"),
            "resumed_from_step": trained.history.resumed_from_step,
            "examples_per_second": trained.history.examples_per_second,
            "num_processes": accelerator.num_processes,
        }
        (Path(out_dir) / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    accelerator.wait_for_everyone()


def launch_on_cpu(task: ClassifierTask, settings: CheckSettings, num_processes: int = 2) -> dict:
    """Run ``train_task`` in ``num_processes`` forked CPU processes (gloo on loopback); return its figures.

    ``accelerate.debug_launcher`` forks the processes and joins them with a file-based
    rendezvous, so no network port is needed; it pins gloo to the loopback interface
    (``GLOO_SOCKET_IFNAME=lo``, ``MASTER_ADDR=127.0.0.1``). The calling process must not be
    one of a distributed group itself (e.g. a script started by torchrun).
    """
    from accelerate import debug_launcher

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise RuntimeError("This process is part of a distributed group already; run the check from a plain one.")
    with tempfile.TemporaryDirectory() as out_dir:
        debug_launcher(_worker, args=(task, settings, out_dir), num_processes=num_processes)
        summary = json.loads((Path(out_dir) / "summary.json").read_text(encoding="utf-8"))
        summary["weights"] = torch.load(Path(out_dir) / "weights.pt", weights_only=True)
    return summary


@dataclass
class EquivalenceReport:
    """How a run in several processes compares with one process and the same global batch."""

    num_processes: int
    optimizer_steps: int
    max_abs_weight_difference: float
    max_abs_loss_difference: float
    shards_disjoint: bool  # in every epoch, no example went to two processes
    shards_cover_the_epoch: bool  # ...and together they are exactly the one-process run's examples
    gathered_predictions: int
    computed_predictions: int  # by all processes, before the padding copies were dropped
    validation_examples: int
    distributed_metrics: dict
    single_process_metrics: dict

    @property
    def metrics_equal(self) -> bool:
        """Same accuracy, and the same loss up to float rounding."""
        a, b = self.distributed_metrics, self.single_process_metrics
        return a["accuracy"] == b["accuracy"] and abs(a["loss"] - b["loss"]) < 1e-5


def _with_threads(threads: int, function: Callable, *args):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return function(*args)
    finally:
        torch.set_num_threads(before)


def equivalence_check(
    task: ClassifierTask | None = None, settings: CheckSettings | None = None, num_processes: int = 2
) -> EquivalenceReport:
    """Train ``task`` in ``num_processes`` CPU processes and in this one with the same global batch; compare.

    The one-process run accumulates ``num_processes`` batches per optimizer step, so both
    runs update the weights from the same examples at every step. Dropout must be off
    (``course_task`` turns it off). The training set is cut to a multiple of the global
    batch so that no process pads its last batch. The validation metrics of the
    distributed run's weights, gathered across processes, are compared with
    ``utils.evaluation.evaluate_classifier`` on one process.
    """
    from utils.evaluation import evaluate_classifier

    task = task or course_task()
    settings = settings or CheckSettings()
    global_batch = settings.batch_size * num_processes
    usable = len(task.train_set) - len(task.train_set) % global_batch
    task = ClassifierTask(task.make_model, task.train_set.select(range(usable)), task.eval_set, task.collate_fn)
    distributed = launch_on_cpu(task, settings, num_processes)
    single = _with_threads(1, train_task, task, settings, None, num_processes)
    model = task.make_model()
    model.load_state_dict(distributed["weights"])
    eval_loader = torch.utils.data.DataLoader(task.eval_set, batch_size=settings.eval_batch_size,
                                              collate_fn=task.collate_fn)  # fmt: skip
    single_metrics = evaluate_classifier(model, eval_loader)
    return EquivalenceReport(
        num_processes=num_processes,
        optimizer_steps=len(single.history.steps),
        max_abs_weight_difference=_max_difference(distributed["weights"], single.weights),
        max_abs_loss_difference=max(abs(a - b) for a, b in zip(distributed["losses"], single.history.column("loss"))),
        shards_disjoint=_disjoint(distributed["shards"]),
        shards_cover_the_epoch=_covers(distributed["shards"], single.epochs_of_ids),
        gathered_predictions=distributed["metrics"]["examples"],
        computed_predictions=distributed["metrics"]["computed"],
        validation_examples=len(task.eval_set),
        distributed_metrics={k: distributed["metrics"][k] for k in ("loss", "accuracy")},
        single_process_metrics=single_metrics,
    )


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[name].double() - b[name].double()).abs().max()) for name in b)


def _disjoint(shards: list[list[list[int]]]) -> bool:
    """``shards[process][epoch]`` lists example ids; True if no id appears twice within an epoch."""
    for epoch in range(len(shards[0])):
        ids = [i for process in shards for i in process[epoch]]
        if len(ids) != len(set(ids)):
            return False
    return True


def _covers(shards: list[list[list[int]]], single: list[list[int]]) -> bool:
    return all(
        sorted(i for process in shards for i in process[epoch]) == sorted(single[epoch]) for epoch in range(len(single))
    )


@dataclass
class ResumeReport:
    """A killed multi-process run, resumed from its ``save_state`` checkpoint, against an uninterrupted one."""

    killed_after_step: int
    resumed_from_step: int
    optimizer_steps: int
    max_abs_weight_difference: float
    same_losses: bool


@contextlib.contextmanager
def _spawn_warnings_off() -> Iterator[None]:
    """Silence torch's process launcher's warnings (errors still show) for a block."""
    logger = logging.getLogger("torch.multiprocessing.spawn")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def resume_check(
    task: ClassifierTask | None = None,
    settings: CheckSettings | None = None,
    num_processes: int = 2,
    kill_at_step: int = 3,
    checkpoint_every: int = 2,
) -> ResumeReport:
    """Kill every process of a run with SIGKILL after ``kill_at_step``, resume it, compare with an uninterrupted run.

    A checkpoint is due every ``checkpoint_every`` steps and written once the next step
    has checked its weights, so the resumed run continues from the newest checkpoint
    at or before ``kill_at_step - 1``. The weights should be bit-identical.
    """
    task = task or course_task()
    settings = settings or CheckSettings()
    straight = launch_on_cpu(task, settings, num_processes)
    with tempfile.TemporaryDirectory() as checkpoints:
        saving = CheckSettings(**{**asdict(settings), "checkpoint_dir": checkpoints, "checkpoint_every": checkpoint_every})
        try:
            with _spawn_warnings_off():  # torch warns, with a timestamp, that it ends the killed run's other processes
                launch_on_cpu(task, CheckSettings(**{**asdict(saving), "kill_at_step": kill_at_step}), num_processes)
        except Exception as error:  # the launcher reports the killed processes
            if "signal" not in str(error).lower() and "exit" not in str(error).lower():
                raise
        else:
            raise RuntimeError(f"The run was not killed: it has fewer than {kill_at_step} steps.")
        resumed = launch_on_cpu(task, CheckSettings(**{**asdict(saving), "resume": True}), num_processes)
    return ResumeReport(
        killed_after_step=kill_at_step,
        resumed_from_step=resumed["resumed_from_step"],
        optimizer_steps=len(resumed["losses"]),
        max_abs_weight_difference=_max_difference(straight["weights"], resumed["weights"]),
        same_losses=straight["losses"] == resumed["losses"],
    )


def process_scaling(task: ClassifierTask | None = None, settings: CheckSettings | None = None) -> dict:
    """Training throughput of 2 processes with 1 thread each against 1 process with 2 threads (same work)."""
    task = task or course_task()
    settings = settings or CheckSettings(num_epochs=1)
    started = time.perf_counter()
    distributed = launch_on_cpu(task, settings, num_processes=2)
    launch_seconds = time.perf_counter() - started
    single = _with_threads(2, train_task, task, settings, None, 2)
    return {
        "2 processes x 1 thread (examples/s)": round(distributed["examples_per_second"], 2),
        "1 process x 2 threads (examples/s)": round(single.history.examples_per_second, 2),
        "ratio": round(distributed["examples_per_second"] / single.history.examples_per_second, 3),
        "2-process launch, whole (s)": round(launch_seconds, 1),
    }


if __name__ == "__main__":
    sys.exit(main())

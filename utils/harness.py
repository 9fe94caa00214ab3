"""The same task through EleutherAI's lm-evaluation-harness: a local task file, a local model, offline.

The harness (``lm-eval`` on the package index) scores a multiple-choice task by the
log-likelihood the model gives each choice after the context, and reports the accuracy with a
standard error. A task is a YAML file; ``dataset_path: json`` reads a local JSONL file, so
nothing is downloaded. ``write_choice_task`` writes both files, ``run_choice_task`` runs the
task on a model folder and returns the accuracy, its standard error and every choice's
log-likelihood, for comparing item by item with another scorer.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def write_choice_task(folder: str | Path, name: str, contexts: Sequence[str], choices: Sequence[str], labels: Sequence[int]) -> Path:
    """Write ``name.jsonl`` (one item per line) and ``name.yaml`` (the task) into ``folder``; return the YAML's path.

    The context is used exactly as given (render chat prompts first), and each choice follows it
    with nothing in between (``target_delimiter: ""``).
    """
    if not len(contexts) == len(labels) or not contexts:
        raise ValueError(f"Need one label per context, at least one item; got {len(contexts)} contexts and {len(labels)} labels.")
    if any(not 0 <= label < len(choices) for label in labels):
        raise ValueError(f"Every label must index one of the {len(choices)} choices {list(choices)}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data_file = folder / f"{name}.jsonl"
    with data_file.open("w", encoding="utf-8") as handle:
        for context, label in zip(contexts, labels):
            handle.write(json.dumps({"context": context, "label": int(label)}) + "\n")
    task = {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{context}}",
        "doc_to_choice": list(choices), "doc_to_target": "{{label}}", "target_delimiter": "",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }  # fmt: skip
    task_file = folder / f"{name}.yaml"
    task_file.write_text(json.dumps(task, indent=2), encoding="utf-8")  # JSON is valid YAML
    return task_file


@dataclass(frozen=True)
class HarnessResult:
    """The harness's accuracy and standard error, and each item's log-likelihood of each choice."""

    accuracy: float
    standard_error: float
    loglikelihoods: np.ndarray  # (items, choices), rows in the order of the task file


def run_choice_task(model_folder: str | Path, task_file: str | Path, batch_size: int = 16, device: str = "cpu") -> HarnessResult:
    """Run a task written by ``write_choice_task`` on the model saved in ``model_folder``, offline."""
    task_file = Path(task_file)
    if not (Path(model_folder) / "config.json").is_file():
        raise FileNotFoundError(f"{model_folder} holds no saved model (no config.json): save_pretrained() the model there first.")
    with contextlib.redirect_stderr(io.StringIO()):  # the harness's progress bars; errors still raise
        output = _evaluate(model_folder, task_file, batch_size, device)
    metrics = output["results"][task_file.stem]
    samples = sorted(output["samples"][task_file.stem], key=lambda sample: sample["doc_id"])
    loglikelihoods = np.array([[float(response[0]) for response in sample["filtered_resps"]] for sample in samples])
    return HarnessResult(float(metrics["acc,none"]), float(metrics["acc_stderr,none"]), loglikelihoods)


def _evaluate(model_folder: str | Path, task_file: Path, batch_size: int, device: str) -> dict:
    """``lm_eval.simple_evaluate`` on one local task, with every sample's responses kept."""
    import lm_eval  # imported here: it is slow to import, and only this function needs it
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={Path(model_folder).resolve()},dtype=float32", tasks=[task_file.stem],
        task_manager=TaskManager(include_path=str(task_file.parent)), device=device, batch_size=batch_size,
        log_samples=True, verbosity="ERROR",
    )  # fmt: skip

"""The checks of every exercise of the course, one function per exercise, in notebook order.

Each check reads the learner's answer and the notebook's own variables from the notebook's namespace,
recomputes what the answer should be with a reference implementation (or tests properties of it), and
returns a short message if it is right. If it is wrong, it raises ``NotYet`` with what is wrong and a
hint that matches the mistake. See ``utils/exercises.py`` for ``check``, ``hint`` and ``solution``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from utils.answers import NO_ANSWER, parse_answer, parse_answers
from utils.exercises import Exercise, NotYet
from utils.loaders import shuffled_loader
from utils.rewards import group_advantages
from utils.tiny_models import tiny_classifier, tiny_loader
from utils.training import move_to_device


def _number(namespace: dict, name: str) -> float:
    """``namespace[name]`` as a float (Python, NumPy or a one-element tensor), or NotYet."""
    value = namespace[name]
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        raise NotYet(f"`{name}` should be one number, but it is a {type(value).__name__}.") from None


def _tiny_batches(device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Three batches of the tiny examples, on ``device``: a check trains or predicts on them."""
    return [move_to_device(batch, device) for batch in tiny_loader(count=24, batch_size=8)]


def _own_random_state(device: torch.device):
    """Run a check's models without changing the random state of the learner's notebook."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _close(value: float, expected: float, rel: float = 1e-3, absolute: float = 1e-6) -> bool:
    return math.isclose(value, expected, rel_tol=rel, abs_tol=absolute)


def _mapping(namespace: dict, name: str, required: list) -> dict:
    """``namespace[name]`` as a dict holding at least the keys ``required``, or NotYet."""
    value = namespace[name]
    if not isinstance(value, dict):
        raise NotYet(f"`{name}` should be a dict, but it is a {type(value).__name__}.")
    missing = [key for key in required if key not in value]
    if missing:
        raise NotYet(f"`{name}` has no entry for {', '.join(map(repr, missing))}.")
    return value


# Notebook 00 ------------------------------------------------------------------------------------


def check_00_1(namespace: dict) -> str:
    table = namespace["sentiment"]["train"].to_pandas()
    lowest, highest = table.nsmallest(1, "rating").iloc[0]["text"], table.nlargest(1, "rating").iloc[0]["text"]
    negative, positive = str(namespace["most_negative_text"]).strip(), str(namespace["most_positive_text"]).strip()
    if (negative, positive) == (highest, lowest):
        raise NotYet("The two are swapped: the most negative sentence has the lowest rating.")
    if negative != lowest:
        raise NotYet("`most_negative_text` is not the training sentence with the lowest mean rating.")
    if positive != highest:
        raise NotYet("`most_positive_text` is not the training sentence with the highest mean rating.")
    return "Both extremes found in the training split."


def check_00_2(namespace: dict) -> str:
    model, tokenizer = namespace["language_model"], namespace["lm_tokenizer"]
    prompt_ids = tokenizer(str(namespace["my_prompt"]), return_tensors="pt")["input_ids"].to(model.device)
    generated = torch.as_tensor(namespace["my_completion"]).reshape(1, -1).to(model.device)
    if not torch.equal(generated[0, : prompt_ids.shape[1]], prompt_ids[0]):
        raise NotYet("`my_completion` does not begin with the tokens of `my_prompt`: generate from the tokenized prompt.")
    with torch.no_grad():
        greedy = model.generate(
            input_ids=prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=12, do_sample=False
        )
        whole_loss = model(greedy, labels=greedy).loss.item()
        prompt_loss = model(prompt_ids, labels=prompt_ids).loss.item() if prompt_ids.shape[1] > 1 else None
    if not torch.equal(generated.cpu(), greedy.cpu()):
        raise NotYet(
            "`my_completion` is not the greedy completion with 12 new tokens: use do_sample=False, max_new_tokens=12."
        )
    loss = _number(namespace, "completion_loss")
    if prompt_loss is not None and _close(loss, prompt_loss, rel=1e-3) and not _close(loss, whole_loss, rel=1e-3):
        raise NotYet("`completion_loss` is the loss on the prompt alone. Compute it on the whole generated sequence.")
    if not _close(loss, whole_loss, rel=1e-3):
        raise NotYet("`completion_loss` is not the model's loss on `my_completion`: pass it as `labels` too.")
    return "Greedy completion and its loss are right."


# Notebook 01 ------------------------------------------------------------------------------------


def _sentence_loss(namespace: dict, words: list[str]) -> float:
    model, tokenizer = namespace["language_model"], namespace["lm_tokenizer"]
    encoded = tokenizer(" ".join(words), return_tensors="pt").to(model.device)
    with torch.no_grad():
        return model(**encoded, labels=encoded["input_ids"]).loss.item()


def check_01_1(namespace: dict) -> str:
    words, shuffled = list(namespace["original_words"]), list(namespace["shuffled_words"])
    if sorted(words) != sorted(shuffled):
        raise NotYet("`shuffled_words` must hold the same words as `original_words`, in another order.")
    if words == shuffled:
        raise NotYet("`shuffled_words` is in the same order as `original_words`: shuffle it.")
    expected = {"original_loss": _sentence_loss(namespace, words), "shuffled_loss": _sentence_loss(namespace, shuffled)}
    for name, value in expected.items():
        if not _close(_number(namespace, name), value, rel=2e-3):
            raise NotYet(f"`{name}` is not the model's loss on the words joined by spaces (labels = the input ids).")
    return "Both losses are right: compare them."


def _count_shots(prefix: str, label_names: list[str]) -> list[int]:
    return [prefix.count(f" {name}\n\n") for name in label_names]


def check_01_2(namespace: dict) -> str:
    prefix, label_names = namespace["other_shots_prefix"], list(namespace["label_names"])
    if prefix == namespace["few_shot_prefix"]:
        raise NotYet("`other_shots_prefix` is the first set of examples: draw another with a different seed.")
    per_label, num_shots = _count_shots(prefix, label_names), namespace["NUM_SHOTS"]
    if per_label != [num_shots // 2] * len(label_names):
        raise NotYet(f"The prefix should hold {num_shots // 2} examples of each label; it holds {per_label}.")
    predictions, labels = np.asarray(namespace["other_predictions"]), np.asarray(namespace["eval_labels"][:60])
    if predictions.shape != labels.shape:
        raise NotYet(
            f"`other_predictions` should hold one 0/1 prediction for each of the first 60 sentences, shape {labels.shape}."
        )
    scores = namespace["score_label_words"](namespace["language_model"], namespace["lm_tokenizer"], prefix,
                                            list(namespace["eval_texts"][:4]), namespace["label_words"], namespace["template"])  # fmt: skip
    if not np.array_equal((scores[:, 1] > scores[:, 0]).astype(int), predictions[:4]):
        raise NotYet("`other_predictions` are not the predictions of `other_shots_prefix`: score with that prefix.")
    if not _close(_number(namespace, "other_accuracy"), float(np.mean(predictions == labels))):
        raise NotYet("`other_accuracy` is not the share of `other_predictions` equal to the labels.")
    if not _close(_number(namespace, "other_positive_share"), float(predictions.mean())):
        raise NotYet("`other_positive_share` is not the share of `other_predictions` that are 1 (positive).")
    return "Other shots scored and summarised correctly."


def check_01_3(namespace: dict) -> str:
    bytes_per_parameter = namespace["bytes_per_parameter"]
    answer = _mapping(namespace, "largest_model_billions", [16, 80])
    for gpu_gb in (16, 80):
        given = _mapping({"row": answer[gpu_gb]}, "row", list(bytes_per_parameter))
        for setting, nbytes in bytes_per_parameter.items():
            value = float(given[setting])
            if _close(value, gpu_gb / nbytes / 8, rel=1e-2):
                raise NotYet(f"{gpu_gb} GB, {setting}: you divided by bits; the table counts bytes per parameter.")
            if not (_close(value, gpu_gb / nbytes, rel=1e-2) or _close(value, gpu_gb * 2**30 / 1e9 / nbytes, rel=1e-2)):
                raise NotYet(
                    f"{gpu_gb} GB, {setting}: not the GPU's bytes divided by the bytes per parameter, in billions."
                )
    return "Largest model sizes are right."


# Notebook 02 ------------------------------------------------------------------------------------


def _fertility(tokenizer, texts: list[str], special_tokens: bool) -> float:
    num_words = sum(len(text.split()) for text in texts)
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=special_tokens)["input_ids"]) / num_words


def check_02_1(namespace: dict) -> str:
    answer = _mapping(namespace, "fertility", ["MiniLM", "SmolLM2"])
    texts = list(namespace["sentiment"]["validation"]["text"])
    for name, tokenizer in [("MiniLM", namespace["minilm_tokenizer"]), ("SmolLM2", namespace["smollm2_tokenizer"])]:
        given = float(answer[name])
        if _close(given, _fertility(tokenizer, texts, True), rel=1e-6) and not _close(
            given, _fertility(tokenizer, texts, False), rel=1e-6
        ):
            raise NotYet(f"{name}: you counted the special tokens too. Tokenize with add_special_tokens=False.")
        if not _close(given, _fertility(tokenizer, texts, False), rel=1e-6):
            raise NotYet(f"{name}: not the number of tokens divided by the number of space-separated words.")
    return "Both fertilities are right."


def check_02_2(namespace: dict) -> str:
    answer = _mapping(namespace, "padding_shares", [8, 32, 128])
    shuffled = shuffled_loader(namespace["tokenized"]["train"], 32, namespace["collator"], namespace["SEED"], group_by_length=False)
    expected = namespace["padding_share"](shuffled)[0]
    if not _close(float(answer[32]), expected, rel=1e-6):
        raise NotYet("The share for batch size 32 is not that of a shuffled loader with dynamic padding "
                     "(generator seeded with SEED, collate_fn=collator).")  # fmt: skip
    return "Padding shares of the shuffled loaders are right."


def _loss_share(namespace: dict, system: str | None) -> float:
    chat_example, tokenizer, label_names = (
        namespace["chat_example"],
        namespace["smollm2_tokenizer"],
        namespace["label_names"],
    )
    examples = []
    for row in namespace["sentiment"]["validation"].select(range(20)):
        messages = [{"role": "system", "content": system}] if system else []
        messages += [
            {"role": "user", "content": row["text"]},
            {"role": "assistant", "content": label_names[row["label"]]},
        ]
        examples.append(chat_example(tokenizer, messages))
    loss_tokens = sum(sum(label != namespace["IGNORE_INDEX"] for label in example["labels"]) for example in examples)
    return loss_tokens / sum(len(example["input_ids"]) for example in examples)


def check_02_3(namespace: dict) -> str:
    answer = _mapping(namespace, "loss_shares", [None])
    if len(answer) < 2:
        raise NotYet("`loss_shares` needs two entries: your system message, and None for SmolLM2's default one.")
    for system, share in answer.items():
        if not _close(float(share), _loss_share(namespace, system), rel=1e-6):
            raise NotYet(f"The share for system message {system!r} is not the loss-carrying tokens (labels not "
                         "IGNORE_INDEX) over all tokens of the 20 examples.")  # fmt: skip
    return "Loss-carrying shares are right."


def reference_causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each token given the positions before it; labels of -100 carry no loss."""
    shifted_logits, shifted_labels = logits[:, :-1, :], labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        shifted_logits.reshape(-1, logits.shape[-1]), shifted_labels.reshape(-1), ignore_index=-100
    )


def _causal_lm_mistakes(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    cross_entropy = torch.nn.functional.cross_entropy
    flat = labels.clamp(min=0)
    return {
        "The labels are not shifted: position t must predict token t+1 (logits[:, :-1] against labels[:, 1:]).":
            cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100),
        "The shift goes the wrong way: keep logits[:, :-1] and labels[:, 1:].":
            cross_entropy(logits[:, 1:].reshape(-1, logits.shape[-1]), labels[:, :-1].reshape(-1), ignore_index=-100),
        "Positions labelled -100 count in your loss: leave them out (ignore_index=-100), they are the prompt and the padding.":
            cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), flat[:, 1:].reshape(-1)),
        "Your loss is a sum; the model's loss is the mean over the positions that carry loss.":
            cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum"),
    }  # fmt: skip


def check_02_4(namespace: dict) -> str:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 11, generator=generator)
    labels = torch.randint(0, 11, (2, 7), generator=generator)
    labels[0, :3], labels[1, 5:] = -100, -100  # a masked prompt and padding
    given = float(namespace["causal_lm_loss"](logits.clone(), labels.clone()))
    if _close(given, float(reference_causal_lm_loss(logits, labels)), rel=1e-5):
        return "Your loss matches the model's: shifted, masked, averaged."
    for message, wrong in _causal_lm_mistakes(logits, labels).items():
        if _close(given, float(wrong), rel=1e-5):
            raise NotYet(message)
    raise NotYet(
        "Your loss differs from the model's. Shift (logits[:, :-1], labels[:, 1:]), then cross-entropy with ignore_index=-100."
    )


# Notebook 03 ------------------------------------------------------------------------------------


def check_03_1(namespace: dict) -> str:
    once, twice = torch.as_tensor(namespace["once_grad"]), torch.as_tensor(namespace["twice_grad"])
    if once.shape != twice.shape or once.abs().sum() == 0:
        raise NotYet("`once_grad` and `twice_grad` should be two non-zero gradients of the same weight.")
    if torch.allclose(once, twice, rtol=1e-4):
        raise NotYet(
            "The two gradients are equal: were the gradients cleared between the passes, or the model rebuilt?"
        )
    if not torch.allclose(twice, 2 * once, rtol=1e-4, atol=1e-7):
        raise NotYet(
            "`twice_grad` should be the gradient after two backward passes on the same batch, without zero_grad."
        )
    return "Two backward passes add up: twice the gradient."


def _schedule_rates(namespace: dict, make_schedule) -> np.ndarray:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=namespace["LEARNING_RATE"])
    schedule = make_schedule(optimizer, namespace["num_warmup_steps"], namespace["num_training_steps"])
    rates = []
    for _ in range(namespace["num_training_steps"] + 1):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    return np.array(rates)


def check_03_2(namespace: dict) -> str:
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    given, steps = np.asarray(namespace["cosine_rates"], dtype=float), namespace["num_training_steps"]
    expected = _schedule_rates(namespace, get_cosine_schedule_with_warmup)
    if given.shape == (steps,) and np.allclose(given, expected[1:]):
        raise NotYet(
            "Off by one step: record the learning rate before you step the schedule, so that step 0 comes first."
        )
    if given.shape == (steps,) and np.allclose(given, _schedule_rates(namespace, get_linear_schedule_with_warmup)[:-1]):
        raise NotYet("These are the linear schedule's rates: use get_cosine_schedule_with_warmup.")
    if given.shape != (steps,) or not np.allclose(given, expected[:-1]):
        raise NotYet(
            f"`cosine_rates` should hold the {steps} learning rates of the cosine schedule, one per optimizer step."
        )
    return "The cosine schedule's rates are right."


def check_03_3(namespace: dict) -> str:
    norms = np.array(namespace["history"].column("grad_norm"), dtype=float)
    given = _number(namespace, "clipped_share")
    if _close(given, float((norms > namespace["MAX_GRAD_NORM"]).sum())):
        raise NotYet("That is the number of clipped steps; give the share (divide by the number of steps).")
    if not _close(given, float((norms > namespace["MAX_GRAD_NORM"]).mean())):
        raise NotYet("`clipped_share` should be the share of steps whose gradient norm was above MAX_GRAD_NORM.")
    return "The share of clipped steps is right."


LOOP_MISTAKES = {
    "no_zero_grad": "Gradients accumulate across steps: call optimizer.zero_grad() after each optimizer step.",
    "no_train_mode": "Dropout stayed off: call model.train() before the loop (the check hands you a model in eval mode).",
    "scheduler_per_epoch": "The learning rate moved once per epoch: call scheduler.step() after every optimizer step.",
    "no_scheduler": "The learning rate never moved: call scheduler.step() after every optimizer step.",
    "no_clipping": "The gradients were not clipped before the step (clipping after optimizer.step() changes nothing): "
    "torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm) between backward() and step().",
    "no_step": "The weights did not change: the loop needs loss.backward() and optimizer.step() (a loss alone learns nothing).",
}


def reference_train_epochs(
    model, train_loader, optimizer, scheduler, num_epochs: int, max_grad_norm: float, bug: str = ""
) -> None:
    """Notebook 03's loop; ``bug`` names one of ``LOOP_MISTAKES`` to reproduce it."""
    if bug != "no_train_mode":
        model.train()
    for _ in range(num_epochs):
        for batch in train_loader:
            loss = model(**batch).loss
            if bug == "no_step":
                continue
            loss.backward()
            if bug != "no_clipping":
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            if bug not in ("scheduler_per_epoch", "no_scheduler"):
                scheduler.step()
            if bug != "no_zero_grad":
                optimizer.zero_grad()
        if bug == "scheduler_per_epoch":
            scheduler.step()


def _weights_after(train_epochs: Callable, device: torch.device, **bug) -> torch.Tensor:
    from transformers import get_linear_schedule_with_warmup

    model = tiny_classifier(seed=0).to(device).eval()
    batches = _tiny_batches(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 2 * len(batches))
    torch.manual_seed(1)
    train_epochs(model, batches, optimizer, scheduler, 2, 0.5, **bug)
    return torch.cat([parameter.detach().flatten().cpu() for parameter in model.parameters()])


def check_03_4(namespace: dict) -> str:
    device = torch.device(namespace.get("device", "cpu"))
    with _own_random_state(device):
        given = _weights_after(namespace["train_epochs"], device)
        if torch.allclose(given, _weights_after(reference_train_epochs, device), rtol=1e-4, atol=1e-6):
            return "Your loop trains exactly like the reference loop: every step in its place."
        for bug, message in LOOP_MISTAKES.items():
            if torch.allclose(given, _weights_after(reference_train_epochs, device, bug=bug), rtol=1e-4, atol=1e-6):
                raise NotYet(message)
    raise NotYet(
        "Your loop trains the tiny model differently from notebook 03's loop. Compare the order of the seven steps."
    )


# Notebook 04 ------------------------------------------------------------------------------------


def check_04_1(namespace: dict) -> str:
    answer = _mapping(namespace, "simulated_best", [1, 3, 9])
    for n in (1, 3, 9):
        expected = float(namespace["expected_max_score"](namespace["final_accuracies"], n))
        if abs(float(answer[n]) - expected) > 0.005:
            raise NotYet(f"For n={n} the simulation is off the formula by {abs(float(answer[n]) - expected):.3f}: draw n runs "
                         "with replacement, keep the best of each draw, and average over many draws.")  # fmt: skip
    return "Simulation and formula agree."


def reference_stopping_on_accuracy(evaluations: list[dict], patience: int) -> tuple[int, int]:
    """Where early stopping on a higher-is-better accuracy stops, and the best step it restores."""
    best_accuracy, best_step, bad = -np.inf, None, 0
    for record in evaluations:
        if record["accuracy"] > best_accuracy:
            best_accuracy, best_step, bad = record["accuracy"], record["step"], 0
        else:
            bad += 1
            if bad >= patience:
                return record["step"], best_step
    return evaluations[-1]["step"], best_step


STOPPING_CASES = [
    [0.50, 0.60, 0.58, 0.57, 0.62, 0.61, 0.60, 0.59],
    [0.50, 0.60, 0.60, 0.60, 0.61, 0.55, 0.54, 0.53],  # ties are not improvements
    [0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75],  # never stops
]


def check_04_2(namespace: dict) -> str:
    function = namespace["stopping_point_on_accuracy"]
    for accuracies in STOPPING_CASES:
        evaluations = [
            {"step": 10 * (i + 1), "accuracy": value, "loss": 1 - value} for i, value in enumerate(accuracies)
        ]
        for patience in (2, 3):
            expected = reference_stopping_on_accuracy(evaluations, patience)
            given = tuple(function([dict(record) for record in evaluations], patience))
            if given != expected:
                detail = (
                    f"accuracies {accuracies}, patience {patience}: expected (stop, restore) = {expected}, got {given}"
                )
                if accuracies == STOPPING_CASES[1]:
                    detail += ". An equal accuracy is not an improvement."
                raise NotYet(detail)
    return "Early stopping on accuracy stops and restores at the right steps."


def _final_correct(namespace: dict) -> np.ndarray:
    starts, labels, seed_table = namespace["starts"], namespace["selection_labels"], namespace["seed_table"]
    return np.array([namespace["correct"](starts[init, order]["final logits"], labels)
                     for init, order in zip(seed_table["init seed"], seed_table["order seed"])])  # fmt: skip


def check_04_3(namespace: dict) -> str:
    import itertools

    final_correct = _final_correct(namespace)
    count = final_correct.shape[1]
    pairs = [np.std(final_correct[a] - final_correct[b], ddof=1) / np.sqrt(count)
             for a, b in itertools.combinations(range(len(final_correct)), 2)]  # fmt: skip
    noise = float(np.sqrt(np.mean(np.square(pairs)) / 2))
    textbook = float(np.sqrt(final_correct.mean() * (1 - final_correct.mean()) / count))
    given_noise = _number(namespace, "noise_per_run")
    if _close(given_noise, textbook, rel=1e-3):
        raise NotYet("`noise_per_run` is the textbook standard error; take it from the paired differences of runs.")
    if _close(given_noise, noise * np.sqrt(2), rel=1e-3):
        raise NotYet("That is the noise of a difference of two runs; divide by sqrt(2) for one run.")
    if not _close(given_noise, noise, rel=1e-3):
        raise NotYet(
            "`noise_per_run` should be the root mean square of the pairs' paired standard errors, over sqrt(2)."
        )
    if not _close(_number(namespace, "seed_std"), float(final_correct.mean(axis=1).std(ddof=1)), rel=1e-3):
        raise NotYet("`seed_std` should be the standard deviation (ddof=1) of the runs' accuracies.")
    return "Measurement noise and seed spread are right."


def check_04_4(namespace: dict) -> str:
    examples = [{"text": f"review {i % 30}", "label": i % 2} for i in range(40)]  # ten texts appear twice
    function = namespace["split_without_leaks"]
    train, validation = function([dict(example) for example in examples], 0.25, 0)
    key = lambda example: (example["text"], example["label"])
    if sorted(map(key, train + validation)) != sorted(map(key, examples)):
        raise NotYet("Together the two splits must hold every example exactly once: none lost, none repeated.")
    shared = {example["text"] for example in train} & {example["text"] for example in validation}
    if shared:
        raise NotYet(f"{len(shared)} texts are in both splits, e.g. {min(shared)!r}: the validation score would "
                     "reward memorising. Split the distinct texts, then put every copy of a text in its text's split.")  # fmt: skip
    if not 6 <= len(validation) <= 14:
        raise NotYet(
            f"With validation_share=0.25 of 40 examples, expect about 10 in validation; got {len(validation)}."
        )
    again = function([dict(example) for example in examples], 0.25, 0)
    if list(map(key, again[1])) != list(map(key, validation)):
        raise NotYet("The same seed gave another split: draw with a generator seeded by `seed`.")
    return "No example and no text leaks from validation into training."


# Notebook 05 ------------------------------------------------------------------------------------


def check_05_1(namespace: dict) -> str:
    from utils.evaluation import accuracy_score

    answer = _mapping(namespace, "interval_widths", ["prompting sample", "whole test split"])
    predictions, labels = namespace["test_predictions"], namespace["test_labels"]
    for name, rows in [("prompting sample", namespace["prompt_rows"]), ("whole test split", np.arange(len(labels)))]:
        _, lower, upper = namespace["bootstrap_interval"](accuracy_score, predictions[rows], labels[rows],
                                                          num_resamples=namespace["NUM_RESAMPLES"], seed=namespace["SEED"])  # fmt: skip
        if not _close(float(answer[name]), upper - lower, rel=0.2):
            raise NotYet(
                f"The width for the {name} should be the upper minus the lower end of its 95% bootstrap interval."
            )
    return "Both interval widths are right."


def check_05_2(namespace: dict) -> str:
    from sklearn.metrics import precision_score, recall_score

    label_names = list(namespace["label_names"])
    answer = _mapping(namespace, "class_recalls", label_names)
    predictions, labels = namespace["test_predictions"], namespace["test_labels"]
    recalls = recall_score(labels, predictions, average=None, labels=list(range(len(label_names))))
    precisions = precision_score(labels, predictions, average=None, labels=list(range(len(label_names))))
    for label, name in enumerate(label_names):
        if _close(float(answer[name]), float(precisions[label]), rel=1e-9) and not _close(
            float(answer[name]), float(recalls[label]), rel=1e-9
        ):
            raise NotYet(
                f"That is the precision of {name}: recall counts among the sentences whose true label is {name}."
            )
        if not _close(float(answer[name]), float(recalls[label]), rel=1e-9):
            raise NotYet(f"The recall of {name} should be the share of truly {name} sentences predicted {name}.")
    return "Both recalls are right."


def check_05_3(namespace: dict) -> str:
    probes, wrong = dict(namespace["probes"]), list(namespace["wrong"])
    if len(probes) < 4:
        raise NotYet("Write at least four probes: negation, irony, a mixed verdict and a neutral statement.")
    outputs = namespace["classify"](list(probes))
    expected = [
        text for (text, label), output in zip(probes.items(), outputs) if label is not None and output["label"] != label
    ]
    if sorted(wrong) != sorted(expected):
        raise NotYet("`wrong` should list the probes with a right answer that the pipeline labels otherwise.")
    return "Your probes are scored and the mistakes listed correctly."


# Notebook 06 ------------------------------------------------------------------------------------


def check_06_1(namespace: dict) -> str:
    titles = list(namespace["play_blocks"])
    answer = _mapping(namespace, "per_play", ["untuned", "merged LoRA"])
    for name in ("untuned", "merged LoRA"):
        _mapping({"row": answer[name]}, "row", titles)
    model = namespace["load_causal_lm"]("smollm2").to(namespace["device"])
    loader = namespace["make_causal_lm_loader"](
        namespace["play_blocks"][titles[0]], namespace["tokenizer"], batch_size=4
    )
    expected = namespace["perplexity"](model, loader)
    if not _close(float(answer["untuned"][titles[0]]), expected, rel=1e-2):
        raise NotYet(f"The untuned model's perplexity on {titles[0]!r} is not that of its 4 blocks: use `perplexity`.")
    return "Per-play perplexities are right."


def check_06_2(namespace: dict) -> str:
    config = namespace["load_causal_lm"]("smollm2").config
    hidden, intermediate, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (hidden // config.num_attention_heads)
    shapes = {"q": (hidden, hidden), "k": (hidden, kv), "v": (hidden, kv), "o": (hidden, hidden),
              "gate": (hidden, intermediate), "up": (hidden, intermediate), "down": (intermediate, hidden)}  # fmt: skip
    part_1, part_2 = layers * 8 * (sum(shapes["q"]) + sum(shapes["v"])), layers * 16 * sum(map(sum, shapes.values()))
    answer = _mapping(namespace, "lora_by_hand", ["part 1", "part 2"])
    for name, expected in [("part 1", part_1), ("part 2", part_2)]:
        given = int(answer[name])
        if given * layers == expected:
            raise NotYet(f"{name}: multiply by the number of layers ({layers}); every layer has its own adapters.")
        if given != expected:
            raise NotYet(f"{name}: r * (d_in + d_out) per adapted matrix, for every layer. Mind that k and v are "
                         f"{kv} wide, not {hidden} (grouped-query attention).")  # fmt: skip
    if part_1 != namespace["lora_trainable"]:
        raise NotYet("Your count is right, but `lora_trainable` in your notebook differs: re-run Part 1.")
    return "Both adapter sizes are right and match peft."


def check_06_3(namespace: dict) -> str:
    samples = _mapping(namespace, "temperature_samples", [])
    if not (any(float(t) < 0.8 for t in samples) and any(float(t) > 0.8 for t in samples)):
        raise NotYet("Sample at one temperature below 0.8 and one above (e.g. 0.3 and 1.5).")
    for temperature, text in samples.items():
        [expected] = namespace["generate_text"](namespace["shakespeare_model"], namespace["tokenizer"], namespace["sample_prompts"][:1],
                                                max_new_tokens=30, seed=namespace["SEED"], temperature=float(temperature))  # fmt: skip
        if text != expected:
            raise NotYet(f"The sample at temperature {temperature} is not generate_text's from the first prompt, "
                         "30 new tokens, seed=SEED.")  # fmt: skip
    return "Samples at both temperatures reproduced."


# Notebook 07 ------------------------------------------------------------------------------------


def check_07_1(namespace: dict) -> str:
    records = [
        {"messages": [{k: v for k, v in m.items() if k != "weight"} for m in r["messages"]]}
        for r in namespace["train_records"]
    ]
    examples = [namespace["tokenize_with_loss_mask"](namespace["tokenizer"], r["messages"]) for r in records]
    expected = float(np.mean([np.mean(np.array(e["labels"]) != -100) for e in examples]))
    given = _number(namespace, "share_unweighted")
    if _close(given, float(namespace["share"]), rel=1e-9):
        raise NotYet("That is the share with the weights: drop every `weight` key before tokenizing.")
    if not _close(given, expected, rel=1e-6):
        raise NotYet("`share_unweighted` should be the mean over examples of each one's share of tokens with a label.")
    return "The share without weights is right."


def check_07_2(namespace: dict) -> str:
    answer = _mapping(namespace, "billing_estimates", [40, 20_000])
    per_example = namespace["counts"][namespace["o200k"].name]
    for size in (40, 20_000):
        tokens = [per_example[i % len(per_example)] for i in range(size)]
        expected = namespace["estimate_billing"](tokens, context_limit=16_385)
        if answer[size] != expected:
            raise NotYet(
                f"For {size} conversations: repeat the per-example counts to {size} entries and call estimate_billing."
            )
    return "Both estimates follow the epoch rule."


def check_07_3(namespace: dict) -> str:
    beta = namespace["DPO_BETA"]
    chosen = beta * (namespace["policy_chosen"] - namespace["reference_chosen"])
    margins = chosen - beta * (namespace["policy_rejected"] - namespace["reference_rejected"])
    if not _close(_number(namespace, "reward_accuracy"), float((margins > 0).float().mean())):
        raise NotYet("`reward_accuracy` should be the share of pairs whose margin is above zero.")
    given_margin = _number(namespace, "mean_margin")
    if _close(given_margin, float(margins.mean()) / beta, rel=1e-4):
        raise NotYet("Multiply by DPO_BETA: a reward is beta times the log-probability gain.")
    if not _close(given_margin, float(margins.mean()), rel=1e-4):
        raise NotYet("`mean_margin` should be the mean of the preferred answer's reward minus the worse one's.")
    return "Reward accuracy and margin are right."


# Notebook 08 ------------------------------------------------------------------------------------


def check_08_1(namespace: dict) -> str:
    processes, per_process, accumulation = 4, 16, 2
    given = int(namespace["global_batch"])
    if given == processes * per_process:
        raise NotYet("Count the accumulation too: each process adds up 2 batches before the step.")
    if given != processes * per_process * accumulation:
        raise NotYet("One step sees every process's batches, each accumulated: processes x batch size x accumulation.")
    if int(namespace["one_gpu_batch_size"]) == given:
        raise NotYet("With --grad-accum-steps 2 on one GPU, each batch is half the global batch.")
    if int(namespace["one_gpu_batch_size"]) * accumulation != given:
        raise NotYet("On one GPU: --batch-size times --grad-accum-steps must equal the global batch.")
    return "Global batch and its one-GPU equivalent are right."


def check_08_2(namespace: dict) -> str:
    config, gib = namespace["llama_configs"]["8B"], namespace["GIB"]
    one_sequence = namespace["activations_gib"](config, batch=1, checkpointing=True) + namespace["logits_gib"](
        config, batch=1
    )
    totals = _mapping(namespace, "total_gib", [])
    table = namespace["memory_table"]
    for row in (row for row in table.index if "GPUs" in row):
        if row not in totals:
            raise NotYet(f"`total_gib` has no entry for the sharded setup {row!r}.")
        if not _close(float(totals[row]), float(table.loc[row, "8B"]) + one_sequence, rel=1e-6):
            raise NotYet(f"{row}: states from the memory table plus the activations and logits of one sequence.")
    expected = {setup for setup, total in totals.items() if float(total) <= 24e9 / gib}
    if set(namespace["fitting_setups"]) != expected:
        raise NotYet(
            "`fitting_setups` should hold exactly the setups of `total_gib` within 24 GB (24e9 bytes, in GiB)."
        )
    return "Memory totals and the setups that fit are right."


def reference_predict_logits(model, loader) -> torch.Tensor:
    """The evaluation half of the loop: eval mode, no gradients, every batch's logits in order."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(**batch).logits for batch in loader])


def _logits_of(predict_logits: Callable, device: torch.device) -> tuple[torch.Tensor, bool]:
    model = tiny_classifier(seed=0, dropout=0.3).to(device).train()  # as a model is after training
    logits = predict_logits(model, _tiny_batches(device))
    return torch.as_tensor(logits).detach().cpu(), bool(getattr(logits, "requires_grad", False))


def check_08_3(namespace: dict) -> str:
    device = torch.device(namespace.get("device", "cpu"))
    with _own_random_state(device):
        given, kept_graph = _logits_of(namespace["predict_logits"], device)
        expected, _ = _logits_of(reference_predict_logits, device)
    if given.shape != expected.shape:
        raise NotYet(f"Expected the logits of all {expected.shape[0]} examples in loader order, shape {tuple(expected.shape)}; "
                     f"got shape {tuple(given.shape)}. Concatenate the batches' logits with torch.cat.")  # fmt: skip
    if not torch.allclose(given, expected, rtol=1e-4, atol=1e-6):
        raise NotYet("The logits change from call to call: dropout is still on. Call model.eval() before predicting.")
    if kept_graph:
        raise NotYet("The logits carry a graph for backward: predict inside `with torch.no_grad():` to save memory and time.")
    return "Eval mode, no gradients, every example once: right."


# Notebook 09 ------------------------------------------------------------------------------------


def check_09_1(namespace: dict) -> str:
    value = _number(namespace, "first_named_accuracy")
    texts, labels, names = namespace["untuned_texts"], np.asarray(namespace["eval_labels"]), namespace["LABELS"]
    first = np.array([p.named[0] if p.named else NO_ANSWER for p in (parse_answer(t, names) for t in texts)])
    expected = float(np.mean(first == labels))
    if _close(value, expected):
        return f"The first named label scores {expected:.2f}: hedged answers now earn credit they did not earn."
    if _close(value, float(np.mean(parse_answers(texts, names, "lenient") == labels))):
        raise NotYet("That is the lenient accuracy: a text naming both labels must count with its first one.")
    if _close(value, float(np.mean(parse_answers(texts, names, "strict") == labels))):
        raise NotYet("That is the strict accuracy: look for the labels anywhere in the text.")
    raise NotYet(f"The share is {value:.4f}; recount it from `parse_answer(text, LABELS).named[0]` for every generation.")


def check_09_2(namespace: dict) -> str:
    value = _number(namespace, "pass_at_4")
    counts, n = np.asarray(namespace["right_counts"])[0], int(namespace["NUM_SAMPLES"])
    expected = float(np.mean([1 - math.comb(n - int(c), 4) / math.comb(n, 4) for c in counts]))
    if _close(value, expected):
        return f"pass@4 = {expected:.3f}, the same as pass_at_k gives."
    if _close(value, float(np.mean(counts / n))):
        raise NotYet("That is pass@1, the share of right samples: draw 4, and ask whether at least one is right.")
    if _close(value, float(np.mean(counts > 0))):
        raise NotYet("That is the share of reviews with at least one right sample of 16 (pass@16), not of 4.")
    raise NotYet(f"pass@4 is {value:.4f} here; per review it is 1 - comb(n - c, 4) / comb(n, 4), then the mean.")


# Notebook 10 ------------------------------------------------------------------------------------


def check_10_1(namespace: dict) -> str:
    rewards, size = namespace["hand_rewards"], int(namespace["NUM_GENERATIONS"])
    try:
        given = torch.as_tensor(namespace["batch_advantages"], dtype=torch.float32).flatten().cpu()
    except (TypeError, ValueError):
        raise NotYet("`batch_advantages` should be a list or tensor of one number per sampled answer.") from None
    if given.shape != (len(rewards),):
        raise NotYet(f"`batch_advantages` should hold {len(rewards)} numbers, one per answer of `hand_rewards`.")
    if torch.allclose(given, group_advantages(rewards, size, "group"), atol=1e-5):
        raise NotYet("Those are the group-scaled advantages: divide by the standard deviation of the whole batch.")
    expected = group_advantages(rewards, size, "batch")
    if torch.allclose(given, group_advantages(rewards, size, "none"), atol=1e-5) and not torch.allclose(given, expected, atol=1e-5):
        raise NotYet("Divide the centred rewards by the batch's standard deviation plus 1e-4.")
    if not torch.allclose(given, expected, atol=1e-4):
        raise NotYet("Subtract each group's mean, then divide by torch.tensor(hand_rewards).std() + 1e-4 (Bessel's n - 1).")
    return "The batch-scaled advantages match TRL's scale_rewards='batch'."


def _first_word_reference(texts: list[str], labels, label_names) -> list[float]:
    import string

    words = [text.split() for text in texts]
    return [float(bool(w) and w[0].strip(string.punctuation).lower() == label_names[int(right)]) for w, right in zip(words, labels)]


def check_10_2(namespace: dict) -> str:
    reward = namespace["first_word_reward"]
    if not callable(reward):
        raise NotYet("`first_word_reward` should be a function of (completions, label, **kwargs).")
    label_names = namespace["label_names"]
    cases = ["Positive or negative", "negative.", "", "The review is positive", " positive", "negatives"]
    labels = [1, 0, 1, 1, 1, 0]
    expected = _first_word_reference(cases, labels, label_names)
    try:
        as_messages = list(reward([[{"role": "assistant", "content": text}] for text in cases], labels, trainer_state=None))
        as_strings = list(reward(cases, labels))
    except Exception as error:  # noqa: BLE001 - any failure of the learner's function is a hint
        raise NotYet(f"Calling first_word_reward failed ({type(error).__name__}: {error}); accept message lists, "
                     "strings and extra keyword arguments.") from None
    if as_messages != expected:
        raise NotYet(f"On message lists {cases} with labels {labels} it gave {as_messages}, expected {expected}.")
    if as_strings != expected:
        raise NotYet("Strings must get the same reward as message lists: use completion_text(completion).")
    payout = np.mean(_first_word_reference(list(namespace["hacked_answers"]), namespace["knob_labels"], label_names))
    if not _close(_number(namespace, "first_word_payout"), float(payout), rel=1e-6):
        raise NotYet("`first_word_payout` should be the mean of first_word_reward(hacked_answers, knob_labels).")
    return "The first-word reward is right, and it pays hedges that start with the right label."


def _exercise(exercise_id: str, names: str, verify: Callable[[dict], str], *hints: str) -> tuple[str, Exercise]:
    return exercise_id, Exercise(exercise_id, tuple(names.split()), verify, hints)


EXERCISES: dict[str, Exercise] = dict([
    _exercise("00.1", "most_negative_text most_positive_text", check_00_1,
              "Turn the training split into a table with `.to_pandas()` and look at the `rating` column.",
              "`table.nsmallest(1, 'rating')` and `table.nlargest(1, 'rating')` give the rows; take their `text`."),
    _exercise("00.2", "my_prompt my_completion completion_loss", check_00_2,
              "Tokenize `my_prompt` with `lm_tokenizer(..., return_tensors='pt')` and pass it to `language_model.generate`.",
              "generate(**prompt, max_new_tokens=12, do_sample=False); then language_model(my_completion, labels=my_completion).loss."),
    _exercise("01.1", "original_words shuffled_words original_loss shuffled_loss", check_01_1,
              "Join the words with spaces, tokenize, and pass `labels=encoded['input_ids']` to the model.",
              "np.random.default_rng(SEED).permutation(words) shuffles; loss = model(**encoded, labels=encoded['input_ids']).loss."),
    _exercise("01.2", "other_shots_prefix other_predictions other_accuracy other_positive_share", check_01_2,
              "Rebuild the prefix as the notebook built `few_shot_prefix`, drawing the examples with another seed.",
              "score_label_words(...) with your prefix on eval_texts[:60]; predict 1 where the positive score is higher."),
    _exercise("01.3", "largest_model_billions", check_01_3,
              "A GPU of G GB holds G * 1e9 / b parameters if each needs b bytes.",
              "largest_model_billions = {g: {s: g / b for s, b in bytes_per_parameter.items()} for g in (16, 80)}"),
    _exercise("02.1", "fertility", check_02_1,
              "Count words with text.split() and tokens with tokenizer(texts, add_special_tokens=False).",
              "fertility = {'MiniLM': tokens / words, 'SmolLM2': tokens / words}, both over the validation texts."),
    _exercise("02.2", "padding_shares", check_02_2,
              "Build a shuffled DataLoader with collate_fn=collator for each batch size and call padding_share on it.",
              "Seed each loader's generator with SEED: torch.Generator().manual_seed(SEED)."),
    _exercise("02.3", "sentiment_conversation loss_shares", check_02_3,
              "A token carries loss when its label is not IGNORE_INDEX.",
              "loss_shares = {your_system: share, None: share}: loss-carrying tokens over all tokens of the 20 examples."),
    _exercise("02.4", "causal_lm_loss", check_02_4,
              "The logits at position t predict the token at t+1.",
              "cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)."),
    _exercise("03.1", "once_grad twice_grad", check_03_1,
              "Clone the gradient after the first backward pass: `.grad.clone()`, or it changes under you.",
              "backward() twice on the same batch, eval() mode, no zero_grad in between; then compare with 2 * once_grad."),
    _exercise("03.2", "cosine_rates", check_03_2,
              "Use a throwaway optimizer and get_cosine_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps).",
              "For each step: record schedule.get_last_lr()[0], then optimizer.step() and schedule.step()."),
    _exercise("03.3", "clipped_share", check_03_3,
              "history.column('grad_norm') holds the norms measured before clipping.",
              "clipped_share = np.mean(np.array(history.column('grad_norm')) > MAX_GRAD_NORM)"),
    _exercise("03.4", "train_epochs", check_03_4,
              "Follow notebook 03's seven steps in order, inside `for epoch ...: for batch in train_loader:`.",
              "model.train(); loss = model(**batch).loss; loss.backward(); clip_grad_norm_; optimizer.step(); "
              "scheduler.step(); optimizer.zero_grad()."),
    _exercise("04.1", "simulated_best", check_04_1,
              "rng.choice(final_accuracies, size=(draws, n)) draws n runs with replacement, many times.",
              "simulated_best[n] = rng.choice(final_accuracies, size=(20_000, n)).max(axis=1).mean()"),
    _exercise("04.2", "stopping_point_on_accuracy", check_04_2,
              "Start from `stopping_point` and flip the comparison: higher accuracy is better.",
              "Only a strictly higher accuracy resets the count; stop when the count reaches `patience`."),
    _exercise("04.3", "noise_per_run seed_std", check_04_3,
              "For each pair of runs, the standard error of the per-sentence difference is std(a - b, ddof=1) / sqrt(n).",
              "noise_per_run = sqrt(mean(pair_errors ** 2) / 2); seed_std = the runs' accuracies' std(ddof=1)."),
    _exercise("04.4", "split_without_leaks", check_04_4,
              "Shuffle the distinct texts with a seeded generator, then assign each example by its text.",
              "validation_texts = the first share of the shuffled distinct texts; an example goes to validation "
              "if its text is one of them, else to training."),
    _exercise("05.1", "interval_widths", check_05_1,
              "bootstrap_interval returns (value, lower, upper); the width is upper - lower.",
              "Use accuracy_score on test_predictions[rows], test_labels[rows] with NUM_RESAMPLES and SEED."),
    _exercise("05.2", "class_recalls", check_05_2,
              "A class's recall is the accuracy on the sentences of that true class.",
              "rows = np.flatnonzero(test_labels == label); recall = mean(test_predictions[rows] == label)."),
    _exercise("05.3", "probes wrong", check_05_3,
              "`probes` maps each sentence to its right label, or None for a neutral one.",
              "Run classify(list(probes)) and collect the sentences whose label differs from a right answer."),
    _exercise("06.1", "play_blocks per_play", check_06_1,
              "Pack each validation play alone with tokenize_and_pack and keep 4 of its blocks.",
              "per_play = {'untuned': {title: perplexity}, 'merged LoRA': {title: perplexity}}"),
    _exercise("06.2", "lora_by_hand", check_06_2,
              "Each adapted matrix adds r * (d_in + d_out) parameters, in every layer.",
              "k and v are num_key_value_heads * head_dim wide; lora_by_hand = {'part 1': ..., 'part 2': ...}."),
    _exercise("06.3", "shakespeare_model temperature_samples", check_06_3,
              "generate_text takes a `temperature` argument.",
              "temperature_samples = {t: generate_text(model, tokenizer, sample_prompts[:1], max_new_tokens=30, "
              "seed=SEED, temperature=t)[0] for t in (0.3, 1.5)}"),
    _exercise("07.1", "share_unweighted", check_07_1,
              "Copy each message without its 'weight' key, then tokenize with tokenize_with_loss_mask.",
              "share_unweighted = mean over examples of mean(labels != -100)."),
    _exercise("07.2", "billing_estimates", check_07_2,
              "Repeat our file's per-example token counts to the size you need.",
              "billing_estimates = {size: estimate_billing(tokens, context_limit=16_385) for size in (40, 20_000)}"),
    _exercise("07.3", "reward_accuracy mean_margin", check_07_3,
              "A reward is DPO_BETA times the policy's log-probability minus the reference's.",
              "margins = rewards_chosen - rewards_rejected; accuracy = mean(margins > 0)."),
    _exercise("08.1", "global_batch one_gpu_batch_size", check_08_1,
              "An optimizer step sees every process's batches, each accumulated over the accumulation steps.",
              "global_batch = processes * per_process * accumulation; one GPU: global_batch // accumulation."),
    _exercise("08.2", "total_gib fitting_setups", check_08_2,
              "A setup's total is its states (memory table, 8B column) plus the activations and logits it holds.",
              "Sharded setups hold one sequence each; fitting_setups = {s for s, t in total_gib.items() if t <= 24e9 / GIB}."),
    _exercise("08.3", "predict_logits", check_08_3,
              "A model comes out of training in train mode, with dropout on.",
              "model.eval(); with torch.no_grad(): return torch.cat([model(**batch).logits for batch in loader])"),
    _exercise("09.1", "first_named_accuracy", check_09_1,
              "`parse_answer(text, LABELS).named` is a tuple of label indices, in the order the text names them.",
              "first = named[0] if named else NO_ANSWER for each untuned text; then the mean of first == eval_labels."),
    _exercise("09.2", "pass_at_4", check_09_2,
              "`right_counts[0]` holds, for each review, how many of seed 0's 16 samples are right.",
              "pass_at_4 = mean over reviews of 1 - math.comb(16 - c, 4) / math.comb(16, 4)."),
    _exercise("10.1", "batch_advantages", check_10_1,
              "Reshape the rewards to (prompts, NUM_GENERATIONS); subtract each row's mean.",
              "(r - r.mean(dim=1, keepdim=True)).flatten() / (torch.tensor(hand_rewards).std() + 1e-4)"),
    _exercise("10.2", "first_word_reward first_word_payout", check_10_2,
              "completion_text(c).split() gives the words; strip string.punctuation from the first and lower-case it.",
              "first_word_payout = float(np.mean(first_word_reward(hacked_answers, knob_labels)))"),
])  # fmt: skip

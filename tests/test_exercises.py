"""The self-checking exercises: stubs, known-buggy answers, hints, solutions and the room report.

That every tagged solution passes its check is proved by the notebooks themselves: each check cell's
stored output says ``passed`` (tests/test_notebook_hygiene.py) and nbval re-runs it.
"""

import json
import re

import nbformat
import numpy as np
import pytest
import torch
from test_notebook_hygiene import NOTEBOOKS, exercise_section, source

from utils import exercises
from utils.exercise_checks import EXERCISES
from utils.exercises import NOT_ATTEMPTED, NOT_YET, PASSED, evaluate


def test_every_exercise_of_every_notebook_has_a_check():
    ids = {found for path in NOTEBOOKS for cell in json.loads(path.read_text())["cells"]
           for found in exercises.CHECK_CALL.findall(source(cell))}  # fmt: skip
    assert ids == set(EXERCISES)


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_a_handout_stub_is_not_attempted_with_a_hint_not_an_error(exercise_id):
    result = evaluate(exercise_id, {})
    assert result.status == NOT_ATTEMPTED
    assert "Define `" in result.message and "Hint: " in result.message


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_no_answer_name_is_defined_before_its_exercise(path):
    """Otherwise a student's empty cell would be checked against a variable of the lesson."""
    cells = json.loads(path.read_text())["cells"]
    lesson = "\n".join(source(cell) for cell in cells[: len(cells) - len(exercise_section({"cells": cells}))])
    names = [name for exercise_id, exercise in EXERCISES.items() if exercise_id[:2] == path.name[:2] for name in exercise.names]
    defined = [name for name in names if re.search(rf"(^|\s|,)({name}\s*(,[^=\n]*)?=[^=]|def {name}\()", lesson, re.MULTILINE)]
    assert not defined, f"{path.name}: the lesson already defines {defined}"


# Known-buggy answers, written as a learner would write them, and the hint each must get.


def good_loop(model, train_loader, optimizer, scheduler, num_epochs, max_grad_norm):
    model.train()
    for _ in range(num_epochs):
        for batch in train_loader:
            optimizer.zero_grad()  # clearing first is as good as clearing last
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()


def loop_without_zero_grad(model, train_loader, optimizer, scheduler, num_epochs, max_grad_norm):
    model.train()
    for _ in range(num_epochs):
        for batch in train_loader:
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()


def loop_without_train_mode(model, train_loader, optimizer, scheduler, num_epochs, max_grad_norm):
    for _ in range(num_epochs):
        for batch in train_loader:
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()


def loop_with_schedule_per_epoch(model, train_loader, optimizer, scheduler, num_epochs, max_grad_norm):
    model.train()
    for _ in range(num_epochs):
        for batch in train_loader:
            model(**batch).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        scheduler.step()


def loop_without_clipping(model, train_loader, optimizer, scheduler, num_epochs, max_grad_norm):
    model.train()
    for _ in range(num_epochs):
        for batch in train_loader:
            model(**batch).loss.backward()
            optimizer.step()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)  # too late: the step is taken
            scheduler.step()
            optimizer.zero_grad()


def loop_of_the_blog_post(model, train_loader, optimizer, scheduler, num_epochs, max_grad_norm):
    model.train()
    for _ in range(num_epochs):
        for batch in train_loader:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])  # no labels, no backward, no step


@pytest.mark.parametrize(("loop", "expected"), [
    (loop_without_zero_grad, "zero_grad"),
    (loop_without_train_mode, "model.train()"),
    (loop_with_schedule_per_epoch, "once per epoch"),
    (loop_without_clipping, "not clipped"),
    (loop_of_the_blog_post, "did not change"),
])  # fmt: skip
def test_each_classic_loop_bug_gets_its_own_hint(loop, expected):
    result = evaluate("03.4", {"train_epochs": loop})
    assert result.status == NOT_YET and expected in result.message, result.message


def test_a_correct_loop_passes_whatever_the_place_of_zero_grad():
    assert evaluate("03.4", {"train_epochs": good_loop}).status == PASSED


def test_a_loop_that_raises_is_not_yet_with_a_hint_and_no_traceback():
    def crashing(model, train_loader, *rest):
        raise KeyError("labels")

    result = evaluate("03.4", {"train_epochs": crashing})
    assert result.status == NOT_YET and "KeyError" in result.message and "Hint:" in result.message


def loss_not_shifted(logits, labels):
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def loss_shifted_the_wrong_way(logits, labels):
    return torch.nn.functional.cross_entropy(logits[:, 1:].reshape(-1, logits.shape[-1]), labels[:, :-1].reshape(-1))


def loss_counting_masked_positions(logits, labels):
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = labels[:, 1:].clamp(min=0)  # -100 made a token id
    return -log_probs.gather(-1, targets.unsqueeze(-1)).mean()


def loss_as_a_sum(logits, labels):
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), reduction="sum")


def right_loss(logits, labels):
    flat_logits, flat_labels = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
    keep = flat_labels != -100
    return torch.nn.functional.cross_entropy(flat_logits[keep], flat_labels[keep])


@pytest.mark.parametrize(("loss", "expected"), [
    (loss_not_shifted, "not shifted"),
    (loss_shifted_the_wrong_way, "wrong way"),
    (loss_counting_masked_positions, "-100 count"),
    (loss_as_a_sum, "a sum"),
])  # fmt: skip
def test_each_classic_causal_lm_loss_bug_gets_its_own_hint(loss, expected):
    result = evaluate("02.4", {"causal_lm_loss": loss})
    assert result.status == NOT_YET and expected in result.message, result.message


def test_a_hand_masked_causal_lm_loss_passes():
    assert evaluate("02.4", {"causal_lm_loss": right_loss}).status == PASSED


def schedule_namespace(rates_offset: int) -> dict:
    from transformers import get_cosine_schedule_with_warmup

    namespace = {"LEARNING_RATE": 1e-3, "num_warmup_steps": 3, "num_training_steps": 20}
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = get_cosine_schedule_with_warmup(optimizer, 3, 20)
    rates = []
    for _ in range(20):
        if rates_offset:  # the classic off-by-one: step first, then record
            optimizer.step()
            schedule.step()
        rates.append(schedule.get_last_lr()[0])
        if not rates_offset:
            optimizer.step()
            schedule.step()
    return namespace | {"cosine_rates": rates}


def test_a_schedule_recorded_after_stepping_gets_the_off_by_one_hint():
    assert evaluate("03.2", schedule_namespace(0)).status == PASSED
    result = evaluate("03.2", schedule_namespace(1))
    assert result.status == NOT_YET and "Off by one" in result.message


class FakeHistory:
    def column(self, name):
        return [0.5, 2.0, 3.0, 0.9]


def test_a_count_given_for_a_share_gets_its_hint():
    namespace = {"history": FakeHistory(), "MAX_GRAD_NORM": 1.0}
    assert evaluate("03.3", namespace | {"clipped_share": 0.5}).status == PASSED
    result = evaluate("03.3", namespace | {"clipped_share": 2})
    assert result.status == NOT_YET and "number of clipped steps" in result.message


def test_early_stopping_that_counts_a_tie_as_progress_gets_its_hint():
    def ties_count(evaluations, patience):
        best, best_step, bad = -np.inf, None, 0
        for record in evaluations:
            if record["accuracy"] >= best:
                best, best_step, bad = record["accuracy"], record["step"], 0
            else:
                bad += 1
                if bad >= patience:
                    return record["step"], best_step
        return evaluations[-1]["step"], best_step

    result = evaluate("04.2", {"stopping_point_on_accuracy": ties_count})
    assert result.status == NOT_YET and "not an improvement" in result.message


def test_a_split_of_examples_that_leaks_repeated_texts_into_validation_is_caught():
    def random_split(examples, validation_share, seed):
        order = np.random.default_rng(seed).permutation(len(examples))
        cut = round(validation_share * len(examples))
        return [examples[i] for i in order[cut:]], [examples[i] for i in order[:cut]]

    def validation_also_trained_on(examples, validation_share, seed):
        return list(examples), list(examples[: round(validation_share * len(examples))])

    result = evaluate("04.4", {"split_without_leaks": random_split})
    assert result.status == NOT_YET and "in both splits" in result.message
    result = evaluate("04.4", {"split_without_leaks": validation_also_trained_on})
    assert result.status == NOT_YET and "exactly once" in result.message


def test_a_global_batch_without_accumulation_gets_its_hint():
    assert evaluate("08.1", {"global_batch": 128, "one_gpu_batch_size": 64}).status == PASSED
    result = evaluate("08.1", {"global_batch": 64, "one_gpu_batch_size": 64})
    assert result.status == NOT_YET and "accumulation" in result.message


def predict_in_train_mode(model, loader):
    with torch.no_grad():
        return torch.cat([model(**batch).logits for batch in loader])


def predict_with_gradients(model, loader):
    model.eval()
    return torch.cat([model(**batch).logits for batch in loader])


def predict_last_batch_only(model, loader):
    model.eval()
    with torch.no_grad():
        for batch in loader:
            logits = model(**batch).logits
    return logits


@pytest.mark.parametrize(("predict", "expected"), [
    (predict_in_train_mode, "model.eval()"),
    (predict_with_gradients, "torch.no_grad()"),
    (predict_last_batch_only, "torch.cat"),
])  # fmt: skip
def test_each_classic_evaluation_bug_gets_its_own_hint(predict, expected):
    result = evaluate("08.3", {"predict_logits": predict})
    assert result.status == NOT_YET and expected in result.message, result.message


def test_an_answer_of_the_wrong_type_is_not_yet_not_a_crash():
    result = evaluate("03.3", {"history": FakeHistory(), "MAX_GRAD_NORM": 1.0, "clipped_share": "half"})
    assert result.status == NOT_YET and "one number" in result.message


# hint, solution, check


def test_check_reads_the_callers_variables_and_prints_one_line(capsys):
    notebook_globals = {"check": exercises.check, "global_batch": 128, "one_gpu_batch_size": 64}
    exec('check("08.1")', notebook_globals)  # noqa: S102 - as a notebook cell runs: the answers are the caller's globals
    assert capsys.readouterr().out.strip() == "Exercise 08.1: passed. Global batch and its one-GPU equivalent are right."


def test_hints_go_from_a_nudge_to_a_stronger_one_and_say_how_many_there_are(capsys):
    exercises.hint("03.4")
    first = capsys.readouterr().out
    exercises.hint("03.4", 2)
    second = capsys.readouterr().out
    assert "Hint 1 of 2" in first and "hint('03.4', 2)" in first and "Hint 2 of 2" in second and first != second


def test_an_unknown_exercise_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="There is no exercise '03.9'. The exercises are: 00.1"):
        exercises.hint("03.9")


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_every_solution_can_be_shown(exercise_id):
    code = exercises.solution_source(exercise_id)
    for name in EXERCISES[exercise_id].names:
        assert name in code


# The room report


def handout_with(path, solved: dict[str, str], tmp_path):
    """A handout of ``path`` in which the exercises in ``solved`` got a stored check output."""
    from utils.handouts import make_handout

    handout = make_handout(nbformat.read(path, as_version=4))
    for cell in handout.cells:
        found = re.fullmatch(r'check\("(\d\d\.\d+)"\)', cell.source.strip())
        if found and found.group(1) in solved:
            text = f"Exercise {found.group(1)}: {solved[found.group(1)]}. ...\n"
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    target = tmp_path / path.name
    nbformat.write(handout, target)
    return target


def test_the_report_counts_passed_attempted_and_not_attempted(tmp_path, capsys):
    handout_with(NOTEBOOKS[3], {"03.1": PASSED, "03.4": NOT_YET}, tmp_path)
    handout_with(NOTEBOOKS[8], {}, tmp_path)
    (tmp_path / "broken.ipynb").write_text("{ not json")
    assert exercises.main(["report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert re.search(r"03_training_loop.ipynb\s+03.1\s+passed", captured.out)
    assert re.search(r"03_training_loop.ipynb\s+03.4\s+not yet", captured.out)
    assert "passed 1, attempted but not yet right 1, not attempted 5" in captured.out
    assert "WARNING: could not read broken.ipynb" in captured.err


def test_the_report_refuses_a_missing_or_empty_folder(tmp_path, capsys):
    assert exercises.main(["report", str(tmp_path / "nowhere")]) == 2
    assert exercises.main(["report", str(tmp_path)]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_the_report_can_run_the_notebooks_first(tmp_path, capsys):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(line) for line in [
        f"import sys; sys.path.insert(0, {str(exercises.NOTEBOOKS_DIR.parent)!r})",
        "from utils.exercises import check", "global_batch, one_gpu_batch_size = 128, 64",
        'check("08.1")', 'check("08.2")',
    ]]  # fmt: skip
    nbformat.write(notebook, tmp_path / "student.ipynb")
    table, unreadable = exercises.room_table(tmp_path, execute=True, timeout=120)
    assert table == {"student.ipynb": {"08.1": PASSED, "08.2": NOT_ATTEMPTED}} and not unreadable

"""The training loop: it learns, accumulates, stops early, checkpoints and resumes exactly."""

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny import tiny_classifier, tiny_loader
from transformers import get_linear_schedule_with_warmup

from utils.evaluation import evaluate_classifier
from utils.training import (
    CHECKPOINT_FILE,
    TrainingDivergedError,
    atomic_save,
    load_checkpoint,
    train,
    weight_decay_groups,
)

RUN_SCRIPT = Path(__file__).with_name("tiny_training_run.py")


def make_run(seed=0, lr=1e-2, total_steps=18):
    model = tiny_classifier(seed=seed)
    loader = tiny_loader(count=48, batch_size=8, seed=1)
    optimizer = torch.optim.AdamW(weight_decay_groups(model, 0.01), lr=lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, 3, total_steps)
    return model, loader, optimizer, scheduler


def same_weights(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_training_lowers_the_loss_and_logs_every_step():
    torch.manual_seed(0)
    model, loader, optimizer, scheduler = make_run()
    eval_loader = tiny_loader(count=48, batch_size=16, shuffle=False)
    before = evaluate_classifier(model, eval_loader)["loss"]
    history = train(model, loader, optimizer, scheduler=scheduler, num_epochs=3, progress=False)
    after = evaluate_classifier(model, eval_loader)["loss"]
    assert after < before
    assert [r["step"] for r in history.steps] == list(range(1, 19))
    assert history.examples_seen == 3 * 48
    # warmup rises for 3 steps, then the rate decays linearly
    rates = history.column("learning_rate")
    assert rates[0] == 0.0 and rates[3] == pytest.approx(1e-2) and rates[-1] < rates[3]
    assert all(r["grad_norm"] is not None for r in history.steps)


def test_weight_decay_groups_exclude_biases_and_layernorm():
    model = tiny_classifier()
    decay, no_decay = weight_decay_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert all(p.ndim >= 2 for p in decay["params"]) and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_gradient_accumulation_matches_a_larger_batch():
    """4 batches of 4 examples with accumulation give the same update as 1 batch of 16."""
    results = []
    for batch_size, accumulation in [(16, 1), (4, 4)]:
        model = tiny_classifier(seed=0, dropout=0.0)
        loader = tiny_loader(count=16, batch_size=batch_size, shuffle=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        train(model, loader, optimizer, num_epochs=1, grad_accum_steps=accumulation, max_grad_norm=None, progress=False)
        results.append(model)
    for name, weight in results[0].state_dict().items():
        torch.testing.assert_close(weight, results[1].state_dict()[name], rtol=1e-5, atol=1e-6)


def test_a_partial_accumulation_group_at_epoch_end_still_steps():
    model = tiny_classifier()
    loader = tiny_loader(count=40, batch_size=8)  # 5 batches
    history = train(model, loader, torch.optim.SGD(model.parameters(), lr=0.1), grad_accum_steps=2, progress=False)
    assert len(history.steps) == 3 and history.examples_seen == 40


def test_max_steps_cuts_training_short():
    model, loader, optimizer, scheduler = make_run()
    history = train(model, loader, optimizer, num_epochs=3, max_steps=4, progress=False)
    assert len(history.steps) == 4


def test_early_stopping_restores_the_best_weights(tmp_path):
    model, loader, optimizer, _ = make_run(lr=0.05)
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])
    snapshots = {}

    def fake_eval(m):
        score = next(scores)
        snapshots[score] = {k: v.clone() for k, v in m.state_dict().items()}
        return {"accuracy": score}

    history = train(
        model, loader, optimizer, num_epochs=3, eval_fn=fake_eval, eval_every=2,
        early_stopping_metric="accuracy", patience=2, progress=False, checkpoint_dir=tmp_path,
    )  # fmt: skip
    assert history.stopped_early and history.best_step == 4 and history.best_metric == 0.7
    assert [e["step"] for e in history.evaluations] == [2, 4, 6, 8]
    assert all(torch.equal(v, snapshots[0.7][k]) for k, v in model.state_dict().items())


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    model, loader, optimizer, scheduler = make_run()
    train(model, loader, optimizer, scheduler=scheduler, max_steps=4, checkpoint_dir=tmp_path, progress=False)
    saved_before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError) as raised:
        train(model, loader, optimizer, max_steps=4, checkpoint_dir=tmp_path, checkpoint_every=1, progress=False)
    message = str(raised.value)
    assert "loss became nan" in message and "step 4" in message and "lower learning rate" in message
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == saved_before
    assert raised.value.history.steps == []


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "state.pt"
    atomic_save({"a": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        atomic_save({"b": Unpicklable()}, path)
    assert torch.load(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


@pytest.mark.parametrize("stop_after", [5, 6, 7, 12])
def test_resuming_reaches_bit_identical_weights(tmp_path, stop_after):
    """Stop inside an epoch and exactly at its end; resuming must not change the result."""
    torch.manual_seed(123)
    uninterrupted, loader, optimizer, scheduler = make_run()
    train(uninterrupted, loader, optimizer, scheduler=scheduler, num_epochs=3, progress=False)

    torch.manual_seed(123)
    first, loader, optimizer, scheduler = make_run()
    train(first, loader, optimizer, scheduler=scheduler, num_epochs=3, max_steps=stop_after,
          checkpoint_dir=tmp_path, progress=False)  # fmt: skip
    torch.manual_seed(999)  # the resumed run must not depend on the state it starts in
    resumed, loader, optimizer, scheduler = make_run(seed=5)
    history = train(resumed, loader, optimizer, scheduler=scheduler, num_epochs=3,
                    checkpoint_dir=tmp_path, resume=True, progress=False)  # fmt: skip
    assert history.resumed_from_step == stop_after and len(history.steps) == 18
    assert same_weights(uninterrupted, resumed)


def test_a_killed_training_process_resumes_to_identical_weights(tmp_path):
    reference, resumed = tmp_path / "reference.pt", tmp_path / "resumed.pt"
    python = sys.executable
    subprocess.run([python, RUN_SCRIPT, tmp_path / "ref", reference], check=True)
    running = subprocess.Popen([python, RUN_SCRIPT, tmp_path / "run", resumed, "--sleep", "0.3"])
    deadline = time.time() + 120
    checkpoint = None
    while time.time() < deadline:  # wait until a checkpoint past step 4 exists, then kill
        checkpoint = load_checkpoint(tmp_path / "run") if (tmp_path / "run" / CHECKPOINT_FILE).exists() else None
        if checkpoint is not None and checkpoint["state"]["step"] >= 4:
            break
        time.sleep(0.05)
    running.send_signal(signal.SIGKILL)
    running.wait()
    assert checkpoint is not None and not resumed.exists(), "the run should die mid-training"
    killed_at = load_checkpoint(tmp_path / "run")["state"]["step"]
    assert 4 <= killed_at < 18
    subprocess.run([python, RUN_SCRIPT, tmp_path / "run", resumed, "--resume"], check=True)
    a, b = torch.load(reference), torch.load(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_arguments_are_explained():
    model, loader, optimizer, _ = make_run()
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train(model, loader, optimizer, resume=True)
    with pytest.raises(ValueError, match="early stopping needs"):
        train(model, loader, optimizer, patience=2)
    with pytest.raises(ValueError, match="use precision='fp32' on CPU"):
        train(model, loader, optimizer, precision="fp16")
    assert math.isnan(train(model, loader, optimizer, max_steps=0, progress=False).examples_per_second)


def test_evaluation_time_is_counted_apart_from_training_time():
    model, loader, optimizer, _ = make_run()

    def slow_eval(m):
        time.sleep(0.2)
        return {"accuracy": 0.5}

    history = train(model, loader, optimizer, max_steps=2, eval_fn=slow_eval, eval_every=1, progress=False)
    assert len(history.evaluations) == 2 and history.eval_seconds >= 0.4
    assert history.train_seconds < history.total_seconds - 0.4

"""The training loop: it learns, accumulates, stops early, checkpoints and resumes exactly."""

import json
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

from utils import training
from utils.checkpoints import (
    LATEST_FILE,
    OLD_CHECKPOINT_FILE,
    STATE_FILE,
    TENSORS_FILE,
    CheckpointError,
    checkpoint_step,
    load_checkpoint,
    save_tensors,
)
from utils.evaluation import evaluate_classifier
from utils.settings_checks import SettingsError
from utils.step_health import StepHealth, check_step
from utils.training import (
    TrainingConfig,
    TrainingDivergedError,
    TrainingHistory,
    clone_state_dict,
    fused_adamw_unavailable,
    make_adamw,
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


def folder_bytes(folder):
    """Every file under ``folder`` with its content, to show that nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


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
    model, loader, optimizer, _ = make_run()
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
    saved_before = folder_bytes(tmp_path)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError) as raised:
        train(model, loader, optimizer, max_steps=4, checkpoint_dir=tmp_path, checkpoint_every=1, progress=False)
    message = str(raised.value)
    assert "loss became nan" in message and "step 4" in message and "lower learning rate" in message
    assert folder_bytes(tmp_path) == saved_before
    assert raised.value.history.steps == []


def test_saving_tensors_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "state.pt"
    save_tensors({"a": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        save_tensors({"b": Unpicklable()}, path)
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
    """SIGKILL right after step 7: the checkpoint due after step 6 was committed once step 7 had checked its
    weights, and nothing later; resuming from it must reach the uninterrupted run's weights exactly."""
    reference, resumed = tmp_path / "reference.pt", tmp_path / "resumed.pt"
    python = sys.executable
    subprocess.run([python, RUN_SCRIPT, tmp_path / "ref", reference], check=True)
    killed = subprocess.run([python, RUN_SCRIPT, tmp_path / "run", resumed, "--kill-after", "7"], check=False)
    assert killed.returncode == -signal.SIGKILL and not resumed.exists()
    assert checkpoint_step(tmp_path / "run") == 6
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


# ------------------------------------------------------------------ failing safe


def warmup_to(peak, seed=0):
    """The tiny run with a linear warmup to ``peak`` over 12 of its 18 steps."""
    model = tiny_classifier(seed=seed)
    loader = tiny_loader(count=48, batch_size=8, seed=1)
    optimizer = torch.optim.AdamW(weight_decay_groups(model, 0.01), lr=peak)
    return model, loader, optimizer, get_linear_schedule_with_warmup(optimizer, 12, 18)


def test_a_run_diverging_mid_training_keeps_the_last_good_checkpoint_and_resumes_at_a_lower_rate(tmp_path):
    """Warmup to a peak rate 300x too high: the first steps are fine, then the loss explodes."""
    model, loader, optimizer, scheduler = warmup_to(3.0)
    with pytest.raises(TrainingDivergedError) as raised:
        train(model, loader, optimizer, scheduler=scheduler, num_epochs=3, checkpoint_dir=tmp_path,
              checkpoint_every=2, progress=False)  # fmt: skip
    message = str(raised.value)
    assert "the loss jumped to" in message and "at optimizer step 5" in message
    assert "last good checkpoint (step 2)" in message and "lower learning rate" in message
    assert len(raised.value.history.steps) == 4  # the exploding step was never taken
    # Step 4 was due for a checkpoint, but step 5 showed its weights to be broken: step 2 stays.
    assert checkpoint_step(tmp_path) == 2
    saved = load_checkpoint(tmp_path)
    assert max(float(v.abs().max()) for v in saved["training"]["model"].values()) < 5

    model, loader, optimizer, scheduler = warmup_to(1e-2, seed=7)  # 300x lower; other starting weights
    history = train(model, loader, optimizer, scheduler=scheduler, num_epochs=3, checkpoint_dir=tmp_path,
                    checkpoint_every=2, resume=True, progress=False)  # fmt: skip
    assert history.resumed_from_step == 2 and len(history.steps) == 18
    rates = history.column("learning_rate")
    assert rates[2] == pytest.approx(1e-2 * 2 / 12) and max(rates[2:]) == pytest.approx(1e-2)
    losses = history.column("loss")
    assert all(math.isfinite(v) for v in losses) and sum(losses[-4:]) / 4 < losses[1]


def test_a_non_finite_gradient_stops_before_the_optimizer_step():
    model, loader, optimizer, _ = make_run()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.classifier.weight.register_hook(lambda gradient: gradient * float("inf"))
    with pytest.raises(TrainingDivergedError, match="gradient norm became (inf|nan)"):
        train(model, loader, optimizer, max_grad_norm=None, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def history_of(losses, norms):
    history = TrainingHistory()
    history.steps = [{"loss": loss, "grad_norm": norm} for loss, norm in zip(losses, norms)]
    return history


def test_check_step_stops_on_non_finite_values_and_explosions():
    history = history_of([0.7, 0.6, 0.5], [1.0, 2.0, 1.5])
    assert check_step(float("nan"), 1.0, history).stop == "the loss became nan"
    assert check_step(0.5, float("inf"), history).stop == "the gradient norm became inf"
    assert check_step(0.5, float("inf"), history, scaler_skips_inf=True).stop is None  # fp16: the scaler skips it
    assert "loss jumped to 7.1" in check_step(7.1, 1.0, history).stop  # 10x the first loss, 0.7
    assert check_step(6.9, 1.0, history).stop is None
    assert check_step(7.1, 1.0, history, explosion_factor=None).stop is None
    assert check_step(0.5, 1.0, TrainingHistory()) == StepHealth()  # the first step has no scale


def test_check_step_scale_tolerates_hard_batches_but_not_a_slow_climb():
    converged = history_of([0.7] + [0.01] * 30, [1.0] * 31)
    assert check_step(2.0, 1.0, converged).stop is None  # a hard batch after the loss fell far
    climbing = history_of([0.7, 1.0, 2.0, 4.0, 6.0], [1.0] * 5)
    assert check_step(25.0, 1.0, climbing).stop is not None  # 10x the median (2.0), though not 10x the largest


def test_an_exploded_gradient_norm_is_suspect_and_skips_the_checkpoint():
    history = history_of([0.7, 0.6], [1.0, 2.0])
    health = check_step(0.6, 40.0, history)
    assert health.stop is None and "gradient norm jumped to 40" in health.suspect


def test_a_checkpoint_waits_for_the_next_step_to_prove_its_weights(tmp_path):
    model, loader, optimizer, scheduler = make_run()
    steps_seen = []

    def look(step, history):
        steps_seen.append((step, checkpoint_step(tmp_path)))

    train(model, loader, optimizer, scheduler=scheduler, max_steps=5, checkpoint_dir=tmp_path, checkpoint_every=2,
          on_step=look, progress=False)  # fmt: skip
    # step 2's checkpoint is written during step 3, step 4's during step 5, and the last one at the end
    assert steps_seen == [(1, None), (2, None), (3, 2), (4, 2), (5, 5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [LATEST_FILE, "step-000005"]


def test_every_checkpoint_file_loads_with_weights_only(tmp_path, monkeypatch):
    model, loader, optimizer, scheduler = make_run()
    train(model, loader, optimizer, scheduler=scheduler, max_steps=3, checkpoint_dir=tmp_path,
          eval_fn=lambda m: {"accuracy": 0.5}, eval_every=1, early_stopping_metric="accuracy", progress=False)  # fmt: skip
    original_load = torch.load
    loads = []

    def only_weights(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return original_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", only_weights)
    folder = tmp_path / json.loads((tmp_path / LATEST_FILE).read_text())["folder"]
    for path in folder.glob("*.pt"):
        torch.load(path, weights_only=True)
    loads.clear()
    train(*make_run()[:3], max_steps=6, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert loads and all(flag is True for flag in loads)
    assert json.loads((folder.parent / checkpoint_folder(tmp_path) / STATE_FILE).read_text())["state"]["step"] == 6


def checkpoint_folder(checkpoint_dir):
    return json.loads((Path(checkpoint_dir) / LATEST_FILE).read_text())["folder"]


def test_the_divergence_message_reads_the_step_without_loading_the_checkpoint(tmp_path, monkeypatch):
    model, loader, optimizer, _ = make_run()
    train(model, loader, optimizer, max_steps=2, checkpoint_dir=tmp_path, progress=False)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))

    def no_loading(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_loading)
    with pytest.raises(TrainingDivergedError, match=r"checkpoint \(step 2\)"):
        train(model, loader, optimizer, max_steps=2, checkpoint_dir=tmp_path, progress=False)


def test_an_old_pickle_checkpoint_is_refused_with_advice(tmp_path):
    torch.save({"anything": 1}, tmp_path / OLD_CHECKPOINT_FILE)
    model, loader, optimizer, _ = make_run()
    with pytest.raises(ValueError, match="earlier format.*delete it"):
        train(model, loader, optimizer, max_steps=1, checkpoint_dir=tmp_path, resume=True, progress=False)


def test_the_best_weights_and_the_checkpoint_always_belong_together(tmp_path):
    """A crash after an evaluation improved, before the next checkpoint, must not pair new best weights
    with an older checkpoint (the earlier code wrote best_model.pt at once and the checkpoint later)."""
    model, loader, optimizer, _ = make_run()
    scores = iter([0.5, 0.6, 0.7, 0.8])
    snapshots = {}

    def improving(m):
        snapshots[len(snapshots) + 1] = {k: v.clone() for k, v in m.state_dict().items()}
        return {"accuracy": next(scores)}

    def crash_at_3(step, history):
        if step == 3:
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        train(model, loader, optimizer, max_steps=4, checkpoint_dir=tmp_path, checkpoint_every=2, eval_fn=improving,
              eval_every=1, early_stopping_metric="accuracy", on_step=crash_at_3, progress=False)  # fmt: skip
    saved = load_checkpoint(tmp_path)
    assert saved["state"]["step"] == 2 and saved["history"].best_step == 2
    assert all(torch.equal(snapshots[2][k], v) for k, v in saved["best_model"].items())


def test_the_previous_checkpoint_stays_until_the_next_is_complete(tmp_path, monkeypatch):
    model, loader, optimizer, scheduler = make_run()
    original_save = torch.save
    calls = {"count": 0}

    def failing_on_the_second_checkpoint(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "optimizer" in obj:
            calls["count"] += 1
            if calls["count"] == 2:
                raise OSError("disk full")
        return original_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_on_the_second_checkpoint)
    with pytest.raises(OSError, match="disk full"):
        train(model, loader, optimizer, scheduler=scheduler, max_steps=6, checkpoint_dir=tmp_path,
              checkpoint_every=2, progress=False)  # fmt: skip
    monkeypatch.setattr(torch, "save", original_save)
    assert checkpoint_step(tmp_path) == 2 and load_checkpoint(tmp_path)["state"]["step"] == 2
    resumed = train(*make_run()[:3], max_steps=6, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert resumed.resumed_from_step == 2 and len(resumed.steps) == 6


def test_resume_takes_the_learning_rate_of_the_optimizer_passed_in(tmp_path):
    model, loader, optimizer, scheduler = make_run(lr=1e-2)
    straight = train(model, loader, optimizer, scheduler=scheduler, num_epochs=3, max_steps=8, progress=False)
    model, loader, optimizer, scheduler = make_run(lr=1e-2)
    train(model, loader, optimizer, scheduler=scheduler, num_epochs=3, max_steps=4, checkpoint_dir=tmp_path, progress=False)
    model, loader, optimizer, scheduler = make_run(lr=1e-3)
    resumed = train(model, loader, optimizer, scheduler=scheduler, num_epochs=3, max_steps=8, checkpoint_dir=tmp_path,
                    resume=True, progress=False)  # fmt: skip
    for step in range(4, 8):  # same schedule position, a tenth of the height
        assert resumed.steps[step]["learning_rate"] == pytest.approx(straight.steps[step]["learning_rate"] / 10)


def test_a_typed_config_and_keywords_give_the_same_run():
    torch.manual_seed(0)
    model, loader, optimizer, scheduler = make_run()
    by_name = train(model, loader, optimizer, scheduler=scheduler, max_steps=3, max_grad_norm=0.5, progress=False)
    torch.manual_seed(0)
    model_b, loader, optimizer, scheduler = make_run()
    config = TrainingConfig(max_steps=3, max_grad_norm=0.5, progress=False)
    by_config = train(model_b, loader, optimizer, config, scheduler=scheduler)
    assert by_name.column("loss") == by_config.column("loss") and same_weights(model, model_b)
    with pytest.raises(TypeError, match="unknown settings \\['max_step'\\]"):
        train(model, loader, optimizer, max_step=3)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        TrainingConfig(grad_accum_steps=0)


def test_make_adamw_uses_the_fused_kernel_and_weight_decay_groups():
    model = tiny_classifier()
    assert fused_adamw_unavailable(model) is None  # CPU has a fused AdamW in this torch
    optimizer = make_adamw(model, 1e-3, weight_decay=0.1)
    assert optimizer.defaults["fused"] is True
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert make_adamw(model, 1e-3, fused=False).defaults["fused"] is None


def test_make_adamw_falls_back_with_the_reason(monkeypatch):
    model = tiny_classifier()
    monkeypatch.setattr(training, "fused_adamw_unavailable", lambda m: "no fused kernel on this device")
    with pytest.warns(UserWarning, match="not the faster fused one: no fused kernel on this device"):
        assert make_adamw(model, 1e-3).defaults["fused"] is None
    with pytest.raises(ValueError, match="fused=True, but no fused kernel"):
        make_adamw(model, 1e-3, fused=True)
    frozen = tiny_classifier().requires_grad_(False)
    assert fused_adamw_unavailable(frozen) == "the model has no trainable parameters"


def test_fused_and_default_adamw_reach_the_same_weights():
    results = []
    for fused in (True, False):
        model = tiny_classifier(seed=0, dropout=0.0)
        loader = tiny_loader(count=16, batch_size=8, shuffle=False)
        train(model, loader, make_adamw(model, 1e-2, fused=fused), max_steps=2, progress=False)
        results.append(model.state_dict())
    for name, weight in results[0].items():
        torch.testing.assert_close(weight, results[1][name], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- bad settings and bad checkpoints


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_grad_norm": -1.0}, r"max_grad_norm must be a positive, finite number .*not -1.0: .*flips the gradient"),
        ({"max_grad_norm": 0.0}, r"max_grad_norm must be a positive, finite number"),
        ({"max_grad_norm": float("nan")}, r"max_grad_norm must be a positive, finite number .*not nan"),
        ({"num_epochs": 0}, r"num_epochs must be an integer of at least 1 \(or None\), not 0"),
        ({"max_steps": -3}, r"max_steps must be an integer of at least 0 \(or None\), not -3"),
        ({"eval_every": 0}, r"eval_every must be an integer of at least 1 \(or None\), not 0"),
        ({"checkpoint_every": 0, "checkpoint_dir": "x"}, r"checkpoint_every must be an integer of at least 1"),
        ({"patience": 0, "early_stopping_metric": "accuracy"}, r"patience must be an integer of at least 1"),
    ],
)
def test_a_setting_out_of_range_is_refused_before_any_step(settings, message):
    model, loader, optimizer, _ = make_run()
    before = clone_state_dict(model)
    with pytest.raises(SettingsError, match=message):
        train(model, loader, optimizer, progress=False, **settings)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


@pytest.mark.parametrize(
    ("learning_rate", "weight_decay", "message"),
    [
        (0.0, 0.01, r"learning_rate must be a positive, finite number such as 5e-5, not 0.0: 0 leaves"),
        (float("inf"), 0.01, r"learning_rate must be .*not inf"),
        (float("nan"), 0.01, r"learning_rate must be .*not nan"),
        (-1e-3, 0.01, r"learning_rate must be .*not -0.001"),
        (1e-3, -0.01, r"weight_decay must be a finite number of at least 0 .*not -0.01: a negative decay"),
        (1e-3, float("nan"), r"weight_decay must be .*not nan"),
    ],
)
def test_make_adamw_refuses_rates_and_decays_that_adamw_lets_through(learning_rate, weight_decay, message):
    with pytest.raises(SettingsError, match=message):
        make_adamw(tiny_classifier(), learning_rate, weight_decay)


def test_resuming_from_a_missing_folder_says_so_and_creates_nothing(tmp_path):
    model, loader, optimizer, _ = make_run()
    missing = tmp_path / "chekpoints"  # a typo
    with pytest.raises(CheckpointError, match=r"resume=True, but the checkpoint folder .*chekpoints does not exist"):
        train(model, loader, optimizer, checkpoint_dir=missing, resume=True, progress=False)
    assert not missing.exists()


def test_resuming_from_an_empty_folder_says_there_is_nothing_to_resume(tmp_path):
    model, loader, optimizer, _ = make_run()
    before = clone_state_dict(model)
    with pytest.raises(CheckpointError, match=r"holds no checkpoint \(latest.json is missing\): nothing to resume"):
        train(model, loader, optimizer, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert list(tmp_path.iterdir()) == []


def saved_run(checkpoint_dir):
    """A checkpoint after 2 steps; returns its folder."""
    train(*make_run()[:3], max_steps=2, checkpoint_dir=checkpoint_dir, progress=False)
    return Path(checkpoint_dir) / checkpoint_folder(checkpoint_dir)


@pytest.mark.parametrize("name", ["../elsewhere", "/tmp", "..", ""])
def test_latest_json_may_not_point_outside_the_checkpoint_folder(tmp_path, name):
    saved_run(tmp_path)
    (tmp_path / LATEST_FILE).write_text(json.dumps({"step": 2, "folder": name}))
    with pytest.raises(CheckpointError, match=r"which is not a folder inside .*only read from its own folder"):
        train(*make_run()[:3], max_steps=4, checkpoint_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match=r"not a folder inside"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:200]), r"it is truncated or damaged"),
        (lambda path: torch.save({"x": Path("somewhere")}, path), r"it holds Python objects other than tensors"),
    ],
    ids=["truncated", "foreign"],
)
def test_a_damaged_or_foreign_checkpoint_file_is_named_with_the_safe_fix(tmp_path, damage, cause):
    folder = saved_run(tmp_path)
    damage(folder / TENSORS_FILE)
    expected = rf"{TENSORS_FILE} cannot be loaded safely: {cause}.*Do not load it with torch.load\(weights_only=False\)"
    model, loader, optimizer, _ = make_run()
    before = clone_state_dict(model)
    with pytest.raises(CheckpointError, match=expected) as caught:
        train(model, loader, optimizer, max_steps=4, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert str(folder / TENSORS_FILE) in str(caught.value) and "Weights only load failed" not in str(caught.value)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(tmp_path)


def test_a_missing_training_state_is_the_same_error_when_loading_and_when_resuming(tmp_path):
    folder = saved_run(tmp_path)
    (folder / TENSORS_FILE).unlink()
    expected = rf"{TENSORS_FILE} is missing: the checkpoint in .* is incomplete"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=expected):
        train(*make_run()[:3], max_steps=4, checkpoint_dir=tmp_path, resume=True, progress=False)


def test_a_damaged_latest_json_is_named(tmp_path):
    saved_run(tmp_path)
    (tmp_path / LATEST_FILE).write_text('{"step": 2, "folder": ')
    with pytest.raises(CheckpointError, match=r"latest.json is not valid JSON .*: the file is damaged"):
        train(*make_run()[:3], max_steps=4, checkpoint_dir=tmp_path, resume=True, progress=False)

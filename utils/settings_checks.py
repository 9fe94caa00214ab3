"""Checks of training settings where they enter: each names the setting, its allowed range and the value.

A setting outside its range rarely fails loudly. A negative ``max_grad_norm`` makes torch
flip the gradient's sign, so training climbs the loss; a negative weight decay pushes weights
away from zero; a learning rate of 0 trains nothing; NaN or infinity destroy the weights at
the first step. ``TrainingConfig``, ``make_adamw``, ``load_classifier`` and the command line of
``utils.finetune`` call these checks before any model is loaded or step taken.

>>> check_max_grad_norm(1.0)
>>> check_max_grad_norm(-1.0)
Traceback (most recent call last):
...
utils.settings_checks.SettingsError: max_grad_norm must be a positive, finite number (or None: no clipping), not -1.0: clipping to a negative norm flips the gradient's sign, so training would climb the loss.
"""

from __future__ import annotations

import math


class SettingsError(ValueError):
    """A setting is outside its allowed range. The message names the setting, the range and the value."""


def _is_number(value: object) -> bool:
    """True for an int or float (bool excluded: ``True`` is not a learning rate)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(valid: bool, name: str, allowed: str, value: object, why: str = "") -> None:
    """Raise SettingsError saying ``name must be <allowed>, not <value>`` (and why) unless ``valid``."""
    if not valid:
        reason = f": {why}" if why else ""
        raise SettingsError(f"{name} must be {allowed}, not {value!r}{reason}.")


def check_learning_rate(value: object, name: str = "learning_rate") -> None:
    """A learning rate is a finite number above 0 (0 trains nothing; NaN or inf destroy the weights)."""
    valid = _is_number(value) and math.isfinite(value) and value > 0
    _require(valid, name, "a positive, finite number such as 5e-5", value,
             "0 leaves the weights unchanged, and NaN or infinity make them NaN at the first step")  # fmt: skip


def check_weight_decay(value: object, name: str = "weight_decay") -> None:
    """Weight decay is a finite number of at least 0 (a negative one pushes the weights away from zero)."""
    valid = _is_number(value) and math.isfinite(value) and value >= 0
    _require(valid, name, "a finite number of at least 0 (0.01 is usual)", value,
             "a negative decay pushes the weights away from zero instead of towards it")  # fmt: skip


def check_max_grad_norm(value: object, name: str = "max_grad_norm") -> None:
    """The clipping norm is None (no clipping) or a finite number above 0."""
    valid = value is None or (_is_number(value) and math.isfinite(value) and value > 0)
    _require(valid, name, "a positive, finite number (or None: no clipping)", value,
             "clipping to a negative norm flips the gradient's sign, so training would climb the loss")  # fmt: skip


def check_dropout(value: object, name: str = "dropout") -> None:
    """A dropout probability is in [0, 1): 1 drops every activation, and outside [0, 1] torch refuses it late."""
    valid = _is_number(value) and 0 <= value < 1
    _require(valid, name, "a probability in [0, 1) such as 0.1", value)


def check_dropout_overrides(overrides: dict[str, object]) -> None:
    """Check every ``*dropout*`` keyword given to a model's ``from_pretrained`` (None keeps the default)."""
    for key, value in overrides.items():
        if "dropout" in key and value is not None:
            check_dropout(value, key)


def check_at_least(value: object, minimum: int, name: str, optional: bool = True) -> None:
    """A count such as ``eval_every`` is an integer of at least ``minimum`` (or None when ``optional``)."""
    valid = (optional and value is None) or (isinstance(value, int) and not isinstance(value, bool) and value >= minimum)
    allowed = f"an integer of at least {minimum}" + (" (or None)" if optional else "")
    _require(valid, name, allowed, value)


def check_precision_for_device(precision: str, on_cpu: bool, name: str = "precision") -> None:
    """bf16 and fp16 autocast are for GPUs in this course: on the CPU, fp32 (or auto) is the setting."""
    valid = not on_cpu or precision in ("auto", "fp32")
    _require(valid, name, "'fp32' or 'auto' on a CPU", precision,
             "bf16 and fp16 autocast are for GPUs in this course; train() refuses them on the CPU too")  # fmt: skip


def check_max_length(value: int, model_positions: int | None, model: str, name: str = "max_length") -> None:
    """``max_length`` tokens must fit the model's position embeddings, or the model fails on long texts."""
    valid = model_positions is None or value <= model_positions
    _require(valid, name, f"at most {model_positions}, the positions {model} has", value,
             "longer inputs have no position embedding")  # fmt: skip

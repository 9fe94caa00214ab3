"""Rewards a program can check, and the arithmetic of GRPO (group relative policy optimisation).

GRPO (Shao et al. 2024, DeepSeekMath) samples a *group* of completions for each prompt, scores
each with a reward, and turns the rewards into **advantages** by comparing every completion with
the others of its group: reward minus the group's mean, divided by the group's standard
deviation. Completions better than their siblings are made more likely, worse ones less likely,
with PPO's clipped objective keeping each step small. No value model, no learned reward model:
the reward is a program.

The reward functions here have the signature TRL's ``GRPOTrainer`` calls: ``completions`` (for a
conversational data set each completion is a list of messages, else a string), the data set's
other columns as keyword arguments (here ``label``, an index into ``labels``), and they return one
float per completion. Answers are parsed with ``utils.answers``, the course's one parser.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from utils.answers import labels_named, parse_answer
from utils.data import SENTIMENT_LABELS

# TRL 1.16 divides by the standard deviation plus this, so that a group of equal rewards gives 0, not nan.
ADVANTAGE_EPSILON = 1e-4
SCALES = ("group", "batch", "none")


def completion_text(completion: str | Sequence[dict]) -> str:
    """The text of one completion: a string as it is, a list of messages as its last message's content.

    >>> completion_text([{"role": "assistant", "content": "positive"}]), completion_text(" negative")
    ('positive', ' negative')
    """
    if isinstance(completion, str):
        return completion
    if not completion:
        return ""
    return str(completion[-1].get("content") or "")


def strict_label_reward(
    completions: Sequence, label: Sequence[int], labels: Sequence[str] = SENTIMENT_LABELS, **kwargs
) -> list[float]:
    """1.0 when the completion is exactly the right label (the strict rule of ``utils.answers``), else 0.0.

    Writing both labels, a label and a sentence, or nothing at all earns nothing.

    >>> strict_label_reward(["positive", " positive ", "positive.", "negative or positive"], [1, 1, 1, 1])
    [1.0, 1.0, 0.0, 0.0]
    """
    return [float(parse_answer(completion_text(c), labels).strict == right) for c, right in zip(completions, label)]


def contains_label_reward(
    completions: Sequence, label: Sequence[int], labels: Sequence[str] = SENTIMENT_LABELS, **kwargs
) -> list[float]:
    """1.0 when the completion names the right label anywhere, as a word, else 0.0: a reward with a loophole.

    A completion that names *both* labels is always paid, whatever the review says.

    >>> contains_label_reward(["positive", "Negative or positive", "negative"], [1, 1, 1])
    [1.0, 1.0, 0.0]
    """
    return [float(right in labels_named(completion_text(c), labels)) for c, right in zip(completions, label)]


def group_advantages(
    rewards: Sequence[float] | torch.Tensor, num_generations: int, scale: str = "group", epsilon: float = ADVANTAGE_EPSILON
) -> torch.Tensor:
    """GRPO's advantages, as TRL 1.16 computes them for one reward function.

    ``rewards`` holds the completions of each prompt next to each other (``num_generations`` per
    prompt). Advantage = reward minus its group's mean, divided by a standard deviation plus
    ``epsilon``: the group's (``scale="group"``, TRL's default), the whole batch's (``"batch"``), or
    not divided at all (``"none"``). Standard deviations use Bessel's correction (n - 1), as TRL does.
    A group whose rewards are all equal gets advantage 0: it carries no signal about which
    completion was better.

    >>> group_advantages([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], num_generations=4).round(decimals=3).tolist()
    [1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}.")
    rewards = torch.as_tensor(rewards, dtype=torch.float32).flatten()
    if num_generations < 2 or len(rewards) % num_generations:
        raise ValueError(
            f"Need groups of at least 2 completions and a whole number of groups: got {len(rewards)} rewards "
            f"in groups of {num_generations}."
        )
    grouped = rewards.view(-1, num_generations)
    advantages = (grouped - grouped.mean(dim=1, keepdim=True)).flatten()
    if scale == "group":
        advantages = advantages / (grouped.std(dim=1).repeat_interleave(num_generations) + epsilon)
    elif scale == "batch":
        advantages = advantages / (rewards.std() + epsilon)
    return advantages


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_epsilon: float = 0.2,
) -> torch.Tensor:
    """The clipped policy-gradient loss of one batch, averaged over its completion tokens (TRL's default "dapo").

    ``logprobs`` (completions x tokens) are the current model's log-probabilities of the sampled
    tokens, ``old_logprobs`` those of the model that sampled them, ``mask`` 1 on real completion
    tokens. Per token: ratio = exp(logprobs - old_logprobs), loss = -min(ratio * A, clip(ratio,
    1 - eps, 1 + eps) * A), with each completion's advantage A on all its tokens.

    >>> same = torch.zeros(2, 3)
    >>> clipped_policy_loss(same, same, torch.tensor([1.0, -1.0]), torch.ones(2, 3)).item()
    0.0
    """
    ratio = torch.exp(logprobs - old_logprobs)
    advantages = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * advantages)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)

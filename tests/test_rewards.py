"""Rewards and GRPO's arithmetic (utils/rewards.py), against TRL 1.16's own formulas."""

import math

import pytest
import torch
from trl.trainer.utils import nanstd

from utils.rewards import (
    ADVANTAGE_EPSILON,
    clipped_policy_loss,
    completion_text,
    contains_label_reward,
    group_advantages,
    strict_label_reward,
)

REWARDS = (strict_label_reward, contains_label_reward)


def as_messages(text):
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize("reward", REWARDS)
def test_an_empty_completion_earns_nothing(reward):
    assert reward(["", as_messages(""), []], [0, 1, 1]) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("reward", REWARDS)
def test_a_completion_of_only_special_tokens_earns_nothing(reward):
    assert reward(["<|im_end|>", as_messages("<|im_end|><|endoftext|>")], [0, 1]) == [0.0, 0.0]


@pytest.mark.parametrize("reward", REWARDS)
def test_message_lists_and_strings_get_the_same_reward(reward):
    texts = ["negative", " positive", "Positive.", "negative or positive", "no idea"]
    labels = [0, 1, 1, 0, 1]
    assert reward(texts, labels) == reward([as_messages(t) for t in texts], labels)


def test_a_message_without_content_is_empty_text():
    assert completion_text([{"role": "assistant", "content": None}]) == ""


def test_the_loophole_pays_for_both_labels_and_the_strict_reward_does_not():
    hedge = ["negative or positive"] * 2
    assert contains_label_reward(hedge, [0, 1]) == [1.0, 1.0]
    assert strict_label_reward(hedge, [0, 1]) == [0.0, 0.0]


def test_trl_passes_other_columns_and_the_rewards_ignore_them():
    assert strict_label_reward(["positive"], [1], prompts=["..."], completion_ids=[[1]], trainer_state=None) == [1.0]


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_a_group_of_equal_rewards_gets_zero_advantage_not_nan(scale):
    advantages = group_advantages([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], num_generations=4, scale=scale)
    group = advantages[:4] if scale != "none" else advantages[4:]
    assert not torch.isnan(advantages).any()
    assert torch.equal(group, torch.zeros(4))
    assert torch.equal(group_advantages([0.5] * 6, num_generations=3, scale=scale), torch.zeros(6))


def trl_advantages(rewards, num_generations, scale):
    """TRL 1.16's lines in GRPOTrainer._generate_and_score_completions (one reward function, weight 1)."""
    mean_grouped = torch.nanmean(rewards.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
    if scale == "group":
        std = nanstd(rewards.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
    else:
        std = nanstd(rewards).expand_as(rewards)
    advantages = rewards - mean_grouped
    if scale != "none":
        advantages = advantages / (std + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("num_generations", [2, 4, 8])
def test_advantages_equal_trl_on_a_random_batch(scale, num_generations):
    generator = torch.Generator().manual_seed(num_generations)
    rewards = torch.randint(0, 3, (16,), generator=generator).float() / 2  # ties and equal groups happen
    expected = trl_advantages(rewards, num_generations, scale)
    assert torch.allclose(group_advantages(rewards, num_generations, scale), expected, atol=1e-6)


def test_the_epsilon_is_trls():
    assert ADVANTAGE_EPSILON == 1e-4
    assert math.isclose(group_advantages([1.0, 0.0], 2)[0].item(), 0.5 / (math.sqrt(0.5) + 1e-4), rel_tol=1e-6)


@pytest.mark.parametrize(("rewards", "num_generations", "scale"), [([1.0, 0.0, 1.0], 2, "group"), ([1.0, 0.0], 1, "group"),
                                                                   ([1.0, 0.0], 2, "mean")])
def test_bad_groups_and_scales_are_refused(rewards, num_generations, scale):
    with pytest.raises(ValueError):
        group_advantages(rewards, num_generations, scale)


def test_the_clipped_loss_at_the_first_step_is_minus_the_token_weighted_mean_advantage():
    logprobs = torch.randn(4, 3, requires_grad=True)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.float32)
    loss = clipped_policy_loss(logprobs, logprobs.detach(), advantages, mask)
    expected = -(advantages[:, None] * mask).sum() / mask.sum()
    assert torch.isclose(loss, expected)
    loss.backward()  # the ratio is 1, yet its gradient is the policy gradient: -A per token / tokens
    assert torch.allclose(logprobs.grad, -advantages[:, None] * mask / mask.sum())


def test_the_ratio_is_clipped_where_it_would_push_further():
    old = torch.zeros(2, 1)
    new = torch.log(torch.tensor([[1.5], [0.5]]))  # ratios 1.5 and 0.5
    advantages = torch.tensor([1.0, -1.0])
    loss = clipped_policy_loss(new, old, advantages, torch.ones(2, 1), clip_epsilon=0.2)
    assert torch.isclose(loss, torch.tensor((-1.2 + 0.8) / 2))  # both clipped: 1 + 0.2 for A > 0, 1 - 0.2 for A < 0

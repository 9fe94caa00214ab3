"""Batched greedy generation, the model judge and the harness task (notebook 09's helpers)."""

import json

import numpy as np
import pytest
import torch
from tiny import tiny_causal_lm

from utils.harness import run_choice_task, write_choice_task
from utils.judging import judge_prompt_ids, position_report
from utils.language_modeling import chat_prompt_ids, generate_token_ids, greedy_generate
from utils.models import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def model(tokenizer):
    model = tiny_causal_lm()
    model.resize_token_embeddings(len(tokenizer))
    return model.eval()


def test_greedy_generate_matches_one_prompt_at_a_time_and_keeps_the_order(tokenizer, model):
    prompts = [chat_prompt_ids(tokenizer, [{"role": "user", "content": text}]) for text in ("Hi", "A much longer question here?", "Yes")]
    batched = greedy_generate(model, tokenizer, prompts, max_new_tokens=4, batch_size=2)
    for row, prompt in enumerate(prompts):
        alone = greedy_generate(model, tokenizer, [prompt], max_new_tokens=4)
        assert batched.texts[row] == alone.texts[0]
        assert batched.first_logprobs[row] == pytest.approx(alone.first_logprobs[0], abs=1e-4)
        with torch.no_grad():
            logits = model(torch.tensor([prompt])).logits[0, -1]
        assert batched.first_logprobs[row] == pytest.approx(torch.log_softmax(logits, -1).numpy(), abs=1e-4)
    ids = generate_token_ids(model, tokenizer, [tokenizer.decode(prompts[0])], max_new_tokens=4, do_sample=False,
                             add_special_tokens=False)  # fmt: skip
    assert batched.texts[0] == tokenizer.decode(ids[0], skip_special_tokens=True)
    assert batched.first_logprobs.shape == (3, len(tokenizer)) and np.exp(batched.first_logprobs).sum(1) == pytest.approx(1, abs=1e-3)


def test_greedy_generate_refuses_empty_prompts(tokenizer, model):
    with pytest.raises(ValueError, match="at least one"):
        greedy_generate(model, tokenizer, [])
    with pytest.raises(ValueError, match="at least one token"):
        greedy_generate(model, tokenizer, [[5, 6], []])


def test_the_judge_prompt_holds_both_answers_and_refuses_what_does_not_fit(tokenizer):
    ids = judge_prompt_ids(tokenizer, "What is 2 + 2?", "4", "5", max_length=200)
    text = tokenizer.decode(ids)
    assert "Answer A: 4\nAnswer B: 5" in text and text.endswith("assistant\n")
    with pytest.raises(ValueError, match=r"longer than the 50 the judge can read: shorten the answers"):
        judge_prompt_ids(tokenizer, "What is 2 + 2?", "four " * 100, "5", max_length=50)
    with pytest.raises(ValueError, match="non-empty answer_b"):
        judge_prompt_ids(tokenizer, "What is 2 + 2?", "4", "  ", max_length=200)


def test_position_report_tells_content_from_position():
    right_is_a = [True, False, True, False]
    reads_content = position_report([True, False, True, False], [False, True, False, True], right_is_a)
    assert (reads_content.consistent, reads_content.right_when_consistent, reads_content.right_per_verdict) == (1.0, 1.0, 1.0)
    always_first = position_report([True] * 4, [True] * 4, right_is_a)
    assert (always_first.consistent, always_first.always_a, always_first.right_per_verdict) == (0.0, 1.0, 0.5)
    assert np.isnan(always_first.right_when_consistent)
    with pytest.raises(ValueError, match="one verdict per order"):
        position_report([True], [True, False], [True])


def test_the_harness_task_file_is_valid_and_refuses_bad_labels(tmp_path):
    task_file = write_choice_task(tmp_path, "reviews", ["Good film.", "Bad film."], ("negative", "positive"), [1, 0])
    task = json.loads(task_file.read_text(encoding="utf-8"))
    assert task["dataset_kwargs"]["data_files"]["test"].endswith("reviews.jsonl") and task["target_delimiter"] == ""
    lines = (tmp_path / "reviews.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["label"] for line in lines] == [1, 0]
    with pytest.raises(ValueError, match="index one of the 2 choices"):
        write_choice_task(tmp_path, "bad", ["x"], ("negative", "positive"), [2])
    with pytest.raises(ValueError, match="one label per context"):
        write_choice_task(tmp_path, "bad", ["x", "y"], ("negative", "positive"), [0])


def test_the_harness_scores_a_local_model_offline_like_the_first_token(tmp_path, tokenizer, model):
    """lm-eval on a tiny model saved to a folder, against the next-token log-probabilities.

    The harness moves the context's trailing whitespace (the newline that ends the assistant header)
    into the continuation, so each choice's log-likelihood also holds log p(newline): the same for
    both choices, so the gap between them, and the answer, are the first token's.
    """
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    prompts = [chat_prompt_ids(tokenizer, [{"role": "user", "content": text}]) for text in ("Good film.", "Bad film.", "Fine.")]
    task_file = write_choice_task(tmp_path / "task", "reviews", [tokenizer.decode(p) for p in prompts], ("negative", "positive"), [1, 0, 1])
    result = run_choice_task(model_dir, task_file, batch_size=2)
    label_ids = [tokenizer("negative", add_special_tokens=False)["input_ids"][0], tokenizer("positive", add_special_tokens=False)["input_ids"][0]]
    expected = greedy_generate(model, tokenizer, prompts, max_new_tokens=1).first_logprobs[:, label_ids]
    gaps = result.loglikelihoods[:, 1] - result.loglikelihoods[:, 0]
    assert gaps == pytest.approx(expected[:, 1] - expected[:, 0], abs=1e-4)
    newline = result.loglikelihoods - expected
    assert newline[:, 0] == pytest.approx(newline[:, 1], abs=1e-4) and np.all(newline < 0)
    assert result.accuracy == np.mean(expected.argmax(1) == [1, 0, 1]) and result.standard_error > 0
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        run_choice_task(tmp_path / "nothing", task_file)

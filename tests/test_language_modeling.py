"""Packing, prompt masking, perplexity and seeded generation for causal LMs."""

import math

import datasets
import numpy as np
import pytest
import torch
from tiny import tiny_causal_lm
from transformers import DataCollatorForSeq2Seq

from utils.language_modeling import (
    IGNORE_INDEX,
    chat_example,
    chat_prompt_ids,
    first_token_ids,
    generate_text,
    generate_token_ids,
    loss_token_fraction,
    make_causal_lm_loader,
    mean_token_loss,
    next_token_logprobs,
    pack_into_blocks,
    perplexity,
    shared_prefix_length,
    tokenize_and_pack,
)
from utils.models import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


def test_packing_makes_full_blocks_with_separators_and_drops_the_tail():
    packed = pack_into_blocks([[5, 6, 7], [8, 9], [10, 11, 12, 13]], block_size=4, separator_id=2)
    # stream: 5 6 7 2 8 9 2 10 11 12 13 2 -> three blocks of four
    assert packed["input_ids"] == [[5, 6, 7, 2], [8, 9, 2, 10], [11, 12, 13, 2]]
    assert packed["labels"] == packed["input_ids"] and packed["labels"][0] is not packed["input_ids"][0]
    assert pack_into_blocks([[1, 2, 3]], block_size=4, separator_id=None)["input_ids"] == []
    with pytest.raises(ValueError):
        pack_into_blocks([[1]], block_size=1, separator_id=None)


def test_tokenize_and_pack_keeps_every_full_block(tokenizer):
    texts = datasets.Dataset.from_dict({"text": ["To be, or not to be: that is the question." * 3, "Exeunt."]})
    packed = tokenize_and_pack(texts, tokenizer, block_size=8)
    total = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts["text"])
    assert len(packed) == total // 8 and all(len(ids) == 8 for ids in packed["input_ids"])
    assert packed.column_names == ["input_ids", "labels"]


def test_chat_examples_mask_everything_but_the_answer(tokenizer):
    messages = [{"role": "user", "content": "Is this review positive? 'A delight.'"},
                {"role": "assistant", "content": "positive"}]  # fmt: skip
    masked = chat_example(tokenizer, messages)
    unmasked = chat_example(tokenizer, messages, mask_prompt=False)
    assert masked["input_ids"] == unmasked["input_ids"] and unmasked["labels"] == unmasked["input_ids"]
    answer = [t for t in masked["labels"] if t != IGNORE_INDEX]
    assert tokenizer.decode(answer).strip() == "positive<|im_end|>"
    assert masked["labels"][: -len(answer)] == [IGNORE_INDEX] * (len(masked["labels"]) - len(answer))
    with pytest.raises(ValueError, match="assistant"):
        chat_example(tokenizer, messages[:1])


def test_perplexity_is_exp_of_the_token_weighted_mean_loss(tokenizer):
    model = tiny_causal_lm()
    examples = [{"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9]},
                {"input_ids": [10, 11, 12], "labels": [10, 11, IGNORE_INDEX]}]  # fmt: skip
    for example in examples:
        example["attention_mask"] = [1] * len(example["input_ids"])
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX)
    loader = torch.utils.data.DataLoader(examples, batch_size=2, collate_fn=collator)
    loss, tokens = mean_token_loss(model, loader)
    assert tokens == 4 + 1  # 4 predictions in the first, 1 in the second (its last label is masked)
    # the same number, one example at a time, by the model's own loss
    with torch.no_grad():
        first = model(input_ids=torch.tensor([examples[0]["input_ids"]]), labels=torch.tensor([examples[0]["labels"]])).loss
        second = model(input_ids=torch.tensor([examples[1]["input_ids"]]), labels=torch.tensor([examples[1]["labels"]])).loss
    assert loss == pytest.approx((4 * first.item() + 1 * second.item()) / 5, rel=1e-5)
    assert perplexity(model, loader) == pytest.approx(math.exp(loss))


def test_generation_is_reproducible_with_a_seed():
    tokenizer = load_tokenizer("smollm2")
    model = tiny_causal_lm()
    model.resize_token_embeddings(len(tokenizer))
    first = generate_text(model, tokenizer, ["Hello"], max_new_tokens=5, seed=3)
    assert first == generate_text(model, tokenizer, ["Hello"], max_new_tokens=5, seed=3)
    assert isinstance(first[0], str)


def test_chat_prompt_ids_are_exactly_the_masked_prompt(tokenizer):
    messages = [{"role": "user", "content": "Positive or negative? 'Dull.'"},
                {"role": "assistant", "content": "negative"}]  # fmt: skip
    prompt = chat_prompt_ids(tokenizer, messages[:1])
    example = chat_example(tokenizer, messages)
    assert example["input_ids"][: len(prompt)] == prompt
    assert example["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert example["labels"][len(prompt)] != IGNORE_INDEX  # the answer starts right after the prompt
    assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="leave the answer out"):
        chat_prompt_ids(tokenizer, messages)
    with pytest.raises(ValueError, match="at least one"):
        chat_prompt_ids(tokenizer, [])


def test_causal_lm_loader_pads_labels_with_ignore_index_and_shuffles_reproducibly(tokenizer):
    examples = datasets.Dataset.from_list(
        [{"input_ids": [5] * n, "attention_mask": [1] * n, "labels": [IGNORE_INDEX] + [5] * (n - 1)} for n in range(2, 10)]
    )
    batch = next(iter(make_causal_lm_loader(examples, tokenizer, batch_size=2)))
    assert batch["input_ids"].tolist() == [[5, 5, tokenizer.pad_token_id], [5, 5, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 5, IGNORE_INDEX], [IGNORE_INDEX, 5, 5]]

    def order(seed):
        return [b["input_ids"].shape[1] for b in make_causal_lm_loader(examples, tokenizer, 1, shuffle=True, seed=seed)]

    assert order(0) == order(0) and sorted(order(0)) == list(range(2, 10)) and order(0) != order(1)


def test_causal_lm_loader_grouped_by_length_pads_less_and_keeps_every_example(tokenizer):
    lengths = [int(n) for n in np.random.default_rng(0).integers(2, 60, size=64)]
    examples = datasets.Dataset.from_list(
        [{"input_ids": [5] * n, "attention_mask": [1] * n, "labels": [5] * n} for n in lengths]
    )

    def batches(group_by_length, seed=0):
        loader = make_causal_lm_loader(examples, tokenizer, 4, shuffle=True, seed=seed, group_by_length=group_by_length)
        return [(batch["attention_mask"].sum(1).tolist(), batch["input_ids"].numel()) for batch in loader]

    grouped, plain = batches(True), batches(False)
    assert sorted(n for sizes, _ in grouped for n in sizes) == sorted(lengths)  # every example, once
    assert sum(cells for _, cells in grouped) < sum(cells for _, cells in plain)  # fewer padded positions
    assert grouped == batches(True) and grouped != batches(True, seed=1)  # reproducible, seed-dependent
    with pytest.raises(ValueError, match="shuffle"):
        make_causal_lm_loader(examples, tokenizer, 4, group_by_length=True)


def test_loss_token_fraction_counts_labels_that_are_not_ignored():
    rows = datasets.Dataset.from_dict({"labels": [[IGNORE_INDEX, IGNORE_INDEX, 3, 4], [IGNORE_INDEX, 7]]})
    assert loss_token_fraction(rows) == pytest.approx(3 / 6)
    with pytest.raises(ValueError):
        loss_token_fraction(datasets.Dataset.from_dict({"labels": [[]]}))


def test_next_token_logprobs_match_a_plain_forward_pass_alone_or_in_a_batch():
    model = tiny_causal_lm()
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]
    candidates = [20, 21, 22]
    batched = next_token_logprobs(model, prompts, candidates, pad_token_id=0, batch_size=3)
    in_pairs = next_token_logprobs(model, prompts, candidates, pad_token_id=0, batch_size=2)  # batched by length
    assert batched.shape == in_pairs.shape == (3, 3)
    assert in_pairs == pytest.approx(batched, abs=1e-5)  # rows come back in the prompts' order
    for row, prompt in enumerate(prompts):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt])).logits[0, -1]
        expected = torch.log_softmax(logits, dim=-1)[candidates].numpy()
        assert batched[row] == pytest.approx(expected, abs=1e-5)
        assert next_token_logprobs(model, [prompt], candidates)[0] == pytest.approx(expected, abs=1e-5)
    assert model.training  # the model's mode is restored
    with pytest.raises(ValueError):
        next_token_logprobs(model, [[5], []], candidates)


def test_generate_token_ids_returns_only_the_new_tokens_and_greedy_is_deterministic():
    tokenizer = load_tokenizer("smollm2")
    model = tiny_causal_lm()
    model.resize_token_embeddings(len(tokenizer))
    first = generate_token_ids(model, tokenizer, ["Hello", "Good night"], max_new_tokens=4, do_sample=False)
    assert len(first) == 2 and all(1 <= len(ids) <= 4 for ids in first)
    assert first == generate_token_ids(model, tokenizer, ["Hello", "Good night"], max_new_tokens=4, do_sample=False, seed=9)
    texts = generate_text(model, tokenizer, ["Hello"], max_new_tokens=4, do_sample=False)
    assert texts == [tokenizer.decode(first[0], skip_special_tokens=True)]


def test_prompts_with_a_shared_prefix_are_scored_as_one_full_forward_pass_each():
    """The shared tokens run once, from a key/value cache; every score equals the plain pass."""
    model = tiny_causal_lm()
    shared = [3, 4, 5, 6, 7]
    prompts = [shared + [8, 9, 10], shared + [11], shared + [12, 13], shared + [12, 14, 15, 16]]
    candidates = [20, 21]
    for batch_size in (1, 3, 4):
        scores = next_token_logprobs(model, prompts, candidates, pad_token_id=0, batch_size=batch_size)
        for row, prompt in enumerate(prompts):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt])).logits[0, -1]
            assert scores[row] == pytest.approx(torch.log_softmax(logits, -1)[candidates].numpy(), abs=1e-5)
    assert shared_prefix_length(prompts) == 5 and shared_prefix_length([shared, shared]) == 4


def test_next_token_logprobs_of_a_peft_model_match_its_forward_pass():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_causal_lm(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    prompts = [[3, 4, 5, 6], [3, 4, 7]]
    scores = next_token_logprobs(model, prompts, [8, 9])
    for row, prompt in enumerate(prompts):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt])).logits[0, -1]
        assert scores[row] == pytest.approx(torch.log_softmax(logits, -1)[[8, 9]].numpy(), abs=1e-5)


def test_first_token_ids_are_distinct_first_tokens(tokenizer):
    ids = first_token_ids(tokenizer, [" negative", " positive"])
    assert ids == [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in [" negative", " positive"]]
    with pytest.raises(ValueError, match="start with the same token"):
        first_token_ids(tokenizer, [" good", " good"])
    with pytest.raises(ValueError, match="have no tokens"):
        first_token_ids(tokenizer, ["", " positive"])


def test_the_train_mode_comes_back_even_when_evaluation_fails(tokenizer):
    model = tiny_causal_lm().train()
    out_of_vocabulary = [[5, 6, 10_000]]
    with pytest.raises(IndexError):
        next_token_logprobs(model, out_of_vocabulary, [5])
    assert model.training
    bad_batches = [{"input_ids": torch.tensor([[5, 6, 10_000]]), "labels": torch.tensor([[5, 6, 7]])}]
    with pytest.raises(IndexError):
        mean_token_loss(model, bad_batches)
    assert model.training
    with pytest.raises(IndexError):  # the SmolLM2 tokenizer's ids are beyond the tiny model's 64 tokens
        generate_token_ids(model, tokenizer, ["Hello there"], max_new_tokens=2)
    assert model.training


def test_token_logprobs_match_one_text_at_a_time_and_keep_order():
    from utils.language_modeling import token_logprobs

    model = tiny_causal_lm()
    texts = [[5, 6, 7, 8, 9], [3], [4, 4, 10]]
    together = token_logprobs(model, texts, start_token_id=1, batch_size=2)
    for tokens, scores in zip(texts, together):
        alone = token_logprobs(model, [tokens], start_token_id=1)[0]
        assert scores.shape == (len(tokens),) and np.allclose(scores, alone, atol=1e-5)
        assert (scores <= 0).all()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 5, 6, 7, 8, 9]])).logits
    expected = torch.log_softmax(logits[0, :-1], -1)[torch.arange(5), torch.tensor([5, 6, 7, 8, 9])]
    assert np.allclose(together[0], expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="at least one token"):
        token_logprobs(model, [[5], []], start_token_id=1)


def test_min_k_percent_prob_takes_the_least_likely_share():
    from utils.language_modeling import min_k_percent_prob

    assert min_k_percent_prob(np.array([-2.0]), k=0.2) == -2.0  # at least one token
    assert min_k_percent_prob(np.array([-1.0, -2.0, -3.0, -4.0]), k=0.5) == -3.5
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="share of the tokens"):
            min_k_percent_prob(np.array([-1.0]), k=bad)
    with pytest.raises(ValueError, match="no tokens"):
        min_k_percent_prob(np.array([]))

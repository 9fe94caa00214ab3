"""Causal language modelling: packing text into blocks, chat examples with masked prompts,
loaders, perplexity, reproducible generation, and scoring answers by next-token log-probabilities.

Labels for a causal LM are the input ids themselves: the model shifts them inside
its forward pass, so position t is trained to predict token t+1. A label of -100
means "no loss here" (padding, or prompt tokens the model should read but not learn
to produce).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch

from utils.loaders import shuffled_loader
from utils.models import eval_mode
from utils.training import move_to_device

IGNORE_INDEX = -100  # the label value PyTorch's cross-entropy skips


def pack_into_blocks(token_lists: Sequence[Sequence[int]], block_size: int, separator_id: int | None) -> dict:
    """Concatenate tokenized documents (with ``separator_id`` after each) and cut the
    stream into blocks of exactly ``block_size`` tokens; the incomplete tail is dropped.

    Packing wastes no compute on padding, and every block is full of real text.
    Returns ``{"input_ids": [...], "labels": [...]}`` with labels equal to input ids.
    """
    if block_size < 2:
        raise ValueError("block_size must be at least 2 (one token to read, one to predict)")
    stream: list[int] = []
    for tokens in token_lists:
        stream.extend(tokens)
        if separator_id is not None:
            stream.append(separator_id)
    usable = len(stream) // block_size * block_size
    blocks = [stream[i : i + block_size] for i in range(0, usable, block_size)]
    return {"input_ids": blocks, "labels": [list(block) for block in blocks]}


def tokenize_and_pack(
    dataset: datasets.Dataset, tokenizer, block_size: int, text_column: str = "text"
) -> datasets.Dataset:
    """Tokenize a text data set and pack it into fixed-size blocks (see ``pack_into_blocks``).

    Documents are separated by the tokenizer's end-of-sequence token, so the model
    learns where one text ends and the next begins.
    """

    def tokenize_and_pack_batch(batch: dict) -> dict:
        token_lists = tokenizer(batch[text_column], add_special_tokens=False)["input_ids"]
        return pack_into_blocks(token_lists, block_size, tokenizer.eos_token_id)

    return dataset.map(tokenize_and_pack_batch, batched=True, batch_size=None, remove_columns=dataset.column_names)


def chat_example(
    tokenizer, messages: list[dict[str, str]], mask_prompt: bool = True, max_length: int | None = None
) -> dict[str, list[int]]:
    """Tokenize one conversation with the model's chat template; the last message is the
    assistant's answer the model should learn to write.

    With ``mask_prompt`` every token before the answer (system and user turns, and the
    assistant header) gets label -100, so the loss is computed on the answer only.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's answer")
    prompt_ids = chat_prompt_ids(tokenizer, messages[:-1])
    full_ids = _as_ids(tokenizer.apply_chat_template(messages, tokenize=True))
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("this chat template does not render the prompt as a prefix of the conversation")
    labels = list(full_ids)
    if mask_prompt:
        labels[: len(prompt_ids)] = [IGNORE_INDEX] * len(prompt_ids)
    if max_length is not None:
        full_ids, labels = full_ids[:max_length], labels[:max_length]
    return {"input_ids": full_ids, "attention_mask": [1] * len(full_ids), "labels": labels}


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation rendered with the chat template, ending with the header
    of the assistant's turn (``add_generation_prompt=True``): what the model reads before it
    writes its answer.

    These are exactly the ids that ``chat_example`` masks, so prompts scored or continued
    with them look like the prompts the model was trained on.
    """
    if not messages:
        raise ValueError("give at least one message")
    if messages[-1]["role"] == "assistant":
        raise ValueError("the prompt ends before the assistant's answer: leave the answer out")
    return _as_ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))


def _as_ids(rendered) -> list[int]:
    """``apply_chat_template(tokenize=True)`` returns a list or a BatchEncoding, by version."""
    if hasattr(rendered, "keys") and "input_ids" in rendered:
        rendered = rendered["input_ids"]
    return list(rendered)


def make_causal_lm_loader(
    dataset, tokenizer, batch_size: int, shuffle: bool = False, seed: int = 0, group_by_length: bool = False
) -> torch.utils.data.DataLoader:
    """A DataLoader of causal-LM examples (``input_ids`` and ``labels``, optionally
    ``attention_mask``), padded per batch.

    Padding uses the tokenizer's pad token for inputs, 0 for the attention mask and -100
    for labels, so padding never carries loss. With ``shuffle`` the order comes from the
    loader's own generator seeded with ``seed``: the same seed gives the same batches (and
    ``train`` can resume exactly). ``group_by_length`` (with ``shuffle``) batches examples
    of similar length together, as ``utils.loaders.make_train_loader`` does, which saves the
    compute spent on padding when lengths vary (packed blocks all have one length and gain nothing).
    """
    from transformers import DataCollatorForSeq2Seq

    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token = tokenizer.eos_token first")
    if group_by_length and not shuffle:
        raise ValueError("group_by_length=True needs shuffle=True (it shuffles, then groups by length)")
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")
    if shuffle:
        return shuffled_loader(dataset, batch_size, collator, seed, group_by_length)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)


def loss_token_fraction(dataset) -> float:
    """Share of the tokens in ``dataset`` whose label is not -100, i.e. that carry loss."""
    labels = list(dataset["labels"])
    total = sum(len(row) for row in labels)
    if total == 0:
        raise ValueError("the data set has no tokens")
    return sum(sum(label != IGNORE_INDEX for label in row) for row in labels) / total


@torch.no_grad()
def mean_token_loss(model: torch.nn.Module, loader: torch.utils.data.DataLoader) -> tuple[float, int]:
    """Mean next-token loss over every labelled token in ``loader``, and the token count.

    Each batch's loss is weighted by its number of predicted tokens, so batches with
    more padding or masked tokens do not count more than they should. The model runs in
    eval mode (dropout off); its previous mode is restored afterwards.
    """
    total_loss, total_tokens = 0.0, 0
    with eval_mode(model):
        device = next(model.parameters()).device
        for batch in loader:
            batch = move_to_device(batch, device)
            labels = batch["labels"]
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
            # position t predicts token t+1: drop the last logit and the first label
            shift_logits, shift_labels = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
            loss = torch.nn.functional.cross_entropy(
                shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum"
            )
            total_loss += float(loss)
            total_tokens += int((shift_labels != IGNORE_INDEX).sum())
    if total_tokens == 0:
        raise ValueError("the loader has no labelled tokens (all labels are -100)")
    return total_loss / total_tokens, total_tokens


def perplexity(model: torch.nn.Module, loader: torch.utils.data.DataLoader) -> float:
    """exp(mean next-token loss): the number of equally likely tokens the model is, on
    average, choosing between. Compare perplexities only over the same tokens."""
    loss, _ = mean_token_loss(model, loader)
    return math.exp(loss)


@torch.no_grad()
def generate_token_ids(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 40,
    seed: int = 0,
    do_sample: bool = True,
    temperature: float = 0.8,
    top_p: float = 0.95,
    add_special_tokens: bool = True,
) -> list[list[int]]:
    """Continue each prompt; returns the ids of the new tokens only (one list per prompt).

    Sampling is seeded before every prompt, so the same model gives the same tokens and
    two models can be compared on equal terms (same prompts, same random numbers).
    Prompts are run one at a time (no padding), so a prompt's result does not depend on
    the others. A prompt may be chat-formatted text (its special tokens are recognised);
    pass ``add_special_tokens=False`` then if the tokenizer would add a BOS token of its own.
    The model runs in eval mode; its previous mode is restored afterwards.
    """
    options = {"do_sample": do_sample, "max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    if do_sample:
        options |= {"temperature": temperature, "top_p": top_p}
    continuations = []
    with eval_mode(model):
        device = next(model.parameters()).device
        for prompt in prompts:
            torch.manual_seed(seed)
            encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens).to(device)
            output = model.generate(**encoded, **options)
            continuations.append(output[0, encoded["input_ids"].shape[1] :].tolist())
    return continuations


def generate_text(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 40,
    seed: int = 0,
    do_sample: bool = True,
    temperature: float = 0.8,
    top_p: float = 0.95,
) -> list[str]:
    """Continue each prompt; returns only the new text (see ``generate_token_ids``).

    Sampling is seeded before every prompt, so the same model gives the same text and
    two models can be compared on equal terms (same prompts, same random numbers).
    """
    continuations = generate_token_ids(model, tokenizer, prompts, max_new_tokens, seed, do_sample, temperature, top_p)
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in continuations]


@dataclass(frozen=True)
class GreedyGenerations:
    """What ``greedy_generate`` returns: the new text of each prompt, and its first token's distribution."""

    texts: list[str]
    first_logprobs: np.ndarray  # (prompts, vocabulary), float32: log-probabilities of the first new token


def greedy_generate(
    model: torch.nn.Module, tokenizer, prompts: Sequence[Sequence[int]], max_new_tokens: int = 8, batch_size: int = 16
) -> GreedyGenerations:
    """Greedy continuations of tokenized prompts (e.g. ``chat_prompt_ids``), many at a time.

    Prompts are batched in order of length and left-padded, so every prompt ends at the
    last position and the new tokens line up; the answer to a prompt can differ from its
    one-at-a-time answer in float rounding only. Besides the text (special tokens dropped),
    it keeps the log-probabilities of every vocabulary token as the first new token: the
    distribution that first-token scoring reads, and that sampling at temperature 1 draws
    the first token from. The model runs in eval mode; its previous mode is restored.
    """
    if len(prompts) == 0 or any(len(prompt) == 0 for prompt in prompts):
        raise ValueError("give at least one prompt, each with at least one token")
    texts: list[str] = [""] * len(prompts)
    first_logprobs: np.ndarray | None = None
    by_length = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
    with eval_mode(model), torch.no_grad():
        device = next(model.parameters()).device
        for start in range(0, len(prompts), batch_size):
            rows = by_length[start : start + batch_size]
            new_ids, logprobs = _greedy_batch(model, [prompts[row] for row in rows], max_new_tokens, tokenizer.pad_token_id, device)
            if first_logprobs is None:
                first_logprobs = np.zeros((len(prompts), logprobs.shape[1]), dtype=np.float32)
            first_logprobs[rows] = logprobs
            for row, ids in zip(rows, new_ids):
                texts[row] = tokenizer.decode(ids, skip_special_tokens=True)
    return GreedyGenerations(texts=texts, first_logprobs=first_logprobs)


def _greedy_batch(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, pad_token_id: int, device):
    """One left-padded batch through ``generate``: the new token ids, and the first step's log-probabilities."""
    longest = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, prompt in enumerate(prompts):
        input_ids[row, longest - len(prompt) :] = torch.tensor(list(prompt))
        mask[row, longest - len(prompt) :] = 1
    output = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), do_sample=False,
                            max_new_tokens=max_new_tokens, pad_token_id=pad_token_id, output_logits=True,
                            return_dict_in_generate=True)  # fmt: skip
    logprobs = torch.log_softmax(output.logits[0].float(), dim=-1).cpu().numpy()
    return output.sequences[:, longest:].tolist(), logprobs


# ------------------------------------------------ scoring answers by the next token


def first_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """The id of the first token of each word: the token whose next-token log-probability
    scores that answer (see ``next_token_logprobs``).

    Mind the leading space: after "Sentiment:" the answer is " positive", after a chat
    template's assistant header (which ends in a newline) usually "positive"; they are
    different tokens.

    Raises ValueError if a word has no tokens or two words start with the same token
    (their scores would be the same number).
    """
    ids = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in words]
    empty = [word for word, word_ids in zip(words, ids) if not word_ids]
    if empty:
        raise ValueError(f"The words {empty} have no tokens; give each answer as non-empty text.")
    firsts = [word_ids[0] for word_ids in ids]
    if len(set(firsts)) != len(firsts):
        raise ValueError(f"The label words {list(words)} start with the same token; choose distinct words.")
    return firsts


@torch.no_grad()
def next_token_logprobs(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    candidate_ids: Sequence[int],
    pad_token_id: int = 0,
    batch_size: int = 16,
) -> np.ndarray:
    """Log-probabilities of ``candidate_ids`` as the next token after each tokenized prompt.

    Returns an array of shape (len(prompts), len(candidate_ids)), rows in the order of
    ``prompts``. Scoring the first token of each possible answer (e.g. "positive" and
    "negative", see ``first_token_ids``) classifies with one forward pass per prompt,
    without generating and parsing text. The log-probabilities are over the whole
    vocabulary, so ``exp(...).sum(1)`` is the probability that the model starts its answer
    with one of the candidates at all.

    Prompts are token ids: text tokenized with ``add_special_tokens=False``, or a chat
    rendered with ``chat_prompt_ids`` (``apply_chat_template``);
    ``utils.evaluation.score_label_words`` does the tokenizing for text prompts. The
    tokens that every prompt starts with (instructions, few-shot examples, a chat
    template's system turn) are run through the model once and their key/value cache
    reused for every batch. The rest of
    each prompt is left-padded with ``pad_token_id``, with position ids counted on from the
    shared part, so a prompt gets the same scores alone or in a batch (up to float
    rounding). Batches are formed in order of prompt length, so they need little padding.
    The model runs in eval mode; its previous mode is restored afterwards.
    """
    if len(prompts) == 0:
        raise ValueError("give at least one prompt")
    if any(len(prompt) == 0 for prompt in prompts):
        raise ValueError("every prompt needs at least one token")
    candidates = list(candidate_ids)
    shared = shared_prefix_length(prompts)
    scores = np.zeros((len(prompts), len(candidates)), dtype=np.float32)
    by_length = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
    with eval_mode(model):
        device = next(model.parameters()).device
        prefix_cache = _prefix_cache(model, prompts[0][:shared], device)
        if prefix_cache is None:  # no shared tokens, or a model that keeps no cache
            shared = 0
        for start in range(0, len(prompts), batch_size):
            rows = by_length[start : start + batch_size]
            rests = [prompts[index][shared:] for index in rows]
            logprobs = _last_position_logprobs(model, rests, prefix_cache, shared, pad_token_id, device)
            scores[rows] = logprobs[:, candidates].cpu().numpy()
    return scores


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all prompts have in common, leaving each at least one of its own.

    >>> shared_prefix_length([[5, 6, 7, 8], [5, 6, 9], [5, 6, 7]])
    2
    >>> shared_prefix_length([[5, 6, 7]])  # one prompt: all but the token that gets scored
    2
    """
    limit = min(len(prompt) for prompt in prompts) - 1
    if limit <= 0:
        return 0
    heads = np.array([list(prompt[:limit]) for prompt in prompts])
    differs = np.flatnonzero((heads != heads[0]).any(axis=0))
    return int(differs[0]) if len(differs) else limit


def _prefix_cache(model: torch.nn.Module, prefix: Sequence[int], device: torch.device):
    """The key/value cache of the shared prefix (batch of one); None for no prefix, or if
    the model returns no cache."""
    if len(prefix) == 0:
        return None
    input_ids = torch.tensor([list(prefix)], dtype=torch.long, device=device)
    return getattr(model(input_ids=input_ids, use_cache=True, logits_to_keep=1), "cache", None)


def _last_position_logprobs(
    model: torch.nn.Module,
    rests: Sequence[Sequence[int]],
    prefix_cache,
    prefix_length: int,
    pad_token_id: int,
    device: torch.device,
) -> torch.Tensor:
    """Next-token log-probabilities (float32, batch x vocabulary) after each prefix + rest.

    The rests are left-padded, so that every prompt ends at the last position; the mask
    hides the padding between the cached prefix and each rest.
    """
    longest = max(len(rest) for rest in rests)
    input_ids = torch.full((len(rests), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rests), longest), dtype=torch.long)
    for row, rest in enumerate(rests):
        input_ids[row, longest - len(rest) :] = torch.tensor(list(rest))
        mask[row, longest - len(rest) :] = 1
    positions = prefix_length + (mask.cumsum(1) - 1).clamp(min=0)
    options = {"use_cache": False}
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)  # each batch extends its own copy
        cache.batch_repeat_interleave(len(rests))
        mask = torch.cat([torch.ones((len(rests), prefix_length), dtype=torch.long), mask], dim=1)
        options = {"use_cache": True, "cache": cache}
    input_ids, mask, positions = input_ids.to(device), mask.to(device), positions.to(device)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1, **options).logits
    return torch.log_softmax(logits[:, -1].float(), dim=-1)


# ---------------------------------------------------------- membership (contamination)


def token_logprobs(
    model: torch.nn.Module, token_lists: Sequence[Sequence[int]], start_token_id: int, batch_size: int = 32
) -> list[np.ndarray]:
    """The log-probability the model gives each token of each text, given the tokens before it.

    Every text is read after ``start_token_id`` (e.g. the tokenizer's ``<|endoftext|>``), so its first
    token is scored too. Returns one float32 array per text, in the order given. Texts are batched
    shortest first and right-padded; padding never reaches a text's own positions.
    """
    if any(len(tokens) == 0 for tokens in token_lists):
        raise ValueError("every text needs at least one token")
    results: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(token_lists)
    by_length = sorted(range(len(token_lists)), key=lambda index: len(token_lists[index]))
    with eval_mode(model), torch.no_grad():
        device = next(model.parameters()).device
        for start in range(0, len(by_length), batch_size):
            rows = by_length[start : start + batch_size]
            longest = max(len(token_lists[row]) for row in rows)
            input_ids = torch.full((len(rows), longest + 1), start_token_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for position, row in enumerate(rows):
                tokens = [start_token_id, *token_lists[row]]
                input_ids[position, : len(tokens)] = torch.tensor(tokens)
                mask[position, : len(tokens)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None].to(device))[..., 0]
            for position, row in enumerate(rows):
                results[row] = logprobs[position, : len(token_lists[row])].cpu().numpy()
    return results


def min_k_percent_prob(logprobs: np.ndarray, k: float = 0.2) -> float:
    """Min-K% Prob (Shi et al., ICLR 2024): the mean log-probability of a text's least likely ``k`` share
    of tokens (at least one). Texts a model saw in pretraining tend to have fewer very unlikely tokens,
    so a higher value hints at membership.

    >>> min_k_percent_prob(np.array([-1.0, -5.0, -0.5, -3.0, -0.1]), k=0.4)
    -4.0
    """
    if not 0 < k <= 1:
        raise ValueError(f"k is a share of the tokens between 0 and 1 (e.g. 0.2), not {k}.")
    if len(logprobs) == 0:
        raise ValueError("a text with no tokens has no Min-K% Prob")
    count = max(1, math.ceil(k * len(logprobs)))
    return float(np.sort(np.asarray(logprobs, dtype=np.float64))[:count].mean())

"""Tiny models and data with random weights: built in a blink, no downloads.

The unit tests train them, and the exercises' checks run a learner's code on them (a training step on
a two-layer BERT takes milliseconds), so a check can tell a forgotten ``zero_grad`` from a correct loop
on any machine.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

VOCAB_SIZE = 64


def tiny_classifier(seed: int = 0, dropout: float = 0.1) -> BertForSequenceClassification:
    """A 2-layer BERT classifier with hidden size 16."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB_SIZE, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, num_labels=2,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )  # fmt: skip
    return BertForSequenceClassification(config)


def tiny_causal_lm(seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer Llama with hidden size 16."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def tiny_examples(count: int = 48, seed: int = 0) -> list[dict]:
    """Variable-length token sequences; label 1 when token 7 appears, so it is learnable."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(count):
        length = int(torch.randint(4, 12, (1,), generator=generator))
        ids = torch.randint(3, VOCAB_SIZE, (length,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": int(7 in ids)})
    return examples


def pad_collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Right-pad input_ids with 0 and build the attention mask."""
    longest = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.zeros((len(examples), longest), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, example in enumerate(examples):
        input_ids[row, : len(example["input_ids"])] = torch.tensor(example["input_ids"])
        mask[row, : len(example["input_ids"])] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": torch.tensor([e["labels"] for e in examples])}


def tiny_loader(
    count: int = 48, batch_size: int = 8, seed: int = 0, shuffle: bool = True
) -> torch.utils.data.DataLoader:
    """A shuffled DataLoader over ``tiny_examples`` with its own seeded generator."""
    return torch.utils.data.DataLoader(
        tiny_examples(count), batch_size=batch_size, shuffle=shuffle, collate_fn=pad_collate,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip

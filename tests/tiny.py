"""Tiny models and data for fast unit tests (random weights, no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

from utils.tiny_models import VOCAB_SIZE, pad_collate, tiny_causal_lm, tiny_classifier, tiny_examples, tiny_loader

__all__ = ["VOCAB_SIZE", "pad_collate", "save_tiny_bert", "tiny_causal_lm", "tiny_classifier", "tiny_examples", "tiny_loader"]


def save_tiny_bert(folder: Path, num_layers: int = 2) -> Path:
    """A tiny random BERT classifier with MiniLM's vocabulary and tokenizer, saved like a real model
    (``max_position_embeddings=64``); the packaged loaders and scripts take ``folder`` as a model name."""
    from utils.models import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=num_layers, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, num_labels=2,
    )  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)

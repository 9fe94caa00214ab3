"""Batches for training and evaluation: tokenized examples, dynamic padding, seeded shuffling."""

from __future__ import annotations

import datasets
import torch

from utils.labelled_files import DataValidationError


def tokenize_for_classification(dataset, tokenizer, max_length: int = 128, text_column: str = "text"):
    """Tokenize a Dataset or DatasetDict for sequence classification.

    Returns the same kind of object with only ``input_ids``, ``attention_mask`` and
    ``labels`` (from ``label``). Texts are truncated to ``max_length`` tokens and not
    padded: a collator pads each batch to its own longest example (dynamic padding).
    """

    def encode(batch: dict) -> dict:
        encoded = tokenizer(batch[text_column], truncation=True, max_length=max_length)
        encoded["labels"] = batch["label"]
        return encoded

    splits = dataset.values() if isinstance(dataset, datasets.DatasetDict) else [dataset]
    columns = {name for split in splits for name in split.column_names}
    if text_column not in columns or "label" not in columns:
        raise DataValidationError(f"Expected columns '{text_column}' and 'label'; found {sorted(columns)}.")
    return dataset.map(encode, batched=True, remove_columns=sorted(columns))


def make_train_loader(
    tokenized, tokenizer, batch_size: int, seed: int, group_by_length: bool = True
) -> torch.utils.data.DataLoader:
    """A shuffled training DataLoader with its own seeded generator and dynamic padding.

    With ``group_by_length`` (the default) examples of similar length are batched
    together (transformers' ``LengthGroupedSampler``: shuffle, cut into groups of 50
    batches, sort each group by length), which wastes far less compute on padding than
    plain shuffling. The generator makes the order reproducible and lets ``train`` resume
    exactly where it stopped.
    """
    from transformers import DataCollatorWithPadding

    return shuffled_loader(tokenized, batch_size, DataCollatorWithPadding(tokenizer), seed, group_by_length)


def shuffled_loader(
    dataset, batch_size: int, collate_fn, seed: int, group_by_length: bool
) -> torch.utils.data.DataLoader:
    """A DataLoader that shuffles with its own generator seeded with ``seed``; with
    ``group_by_length``, batches hold examples of similar ``input_ids`` length
    (``LengthGroupedSampler``). Shared by the classification and causal-LM loaders."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    generator = torch.Generator().manual_seed(seed)
    if group_by_length:
        lengths = [len(ids) for ids in dataset["input_ids"]]
        sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=generator)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=collate_fn
    )


def make_eval_loader(tokenized, tokenizer, batch_size: int = 64) -> torch.utils.data.DataLoader:
    """An evaluation DataLoader: fixed order (no shuffling), dynamic padding."""
    from transformers import DataCollatorWithPadding

    return torch.utils.data.DataLoader(
        tokenized, batch_size=batch_size, shuffle=False, collate_fn=DataCollatorWithPadding(tokenizer)
    )

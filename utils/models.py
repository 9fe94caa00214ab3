"""Load tokenizers and models from a packaged asset, a local folder, or the Hugging Face Hub.

The course's defaults are the packaged assets ``"minilm"`` (all-MiniLM-L6-v2, an
encoder) and ``"smollm2"`` (SmolLM2-135M-Instruct, a causal LM). Any Hub model id
works too when you are online, so swapping in another model is one argument:

    model = load_classifier("distilbert-base-uncased")   # online
    model = load_classifier("path/to/my_saved_model")     # a folder from save_pretrained
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertPreTrainedModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from utils.assets import ASSETS, fetch
from utils.data import SENTIMENT_LABELS
from utils.environment import hub_offline
from utils.settings_checks import check_dropout_overrides

DEFAULT_ENCODER = "minilm"
DEFAULT_CAUSAL_LM = "smollm2"
MODEL_ASSETS = tuple(name for name, asset in ASSETS.items() if asset.kind == "model")


class ModelLoadError(OSError):
    """A model or tokenizer could not be found or loaded. The message says what to do."""


def resolve_model_source(name_or_path: str | os.PathLike) -> str:
    """Turn a model name into something ``from_pretrained`` accepts.

    - a packaged asset name (``"minilm"``, ``"smollm2"``): its cached folder, fetched if needed;
    - an existing local folder: that folder;
    - anything else is taken as a Hub model id, which fails at once with advice while
      the Hub is offline (``HF_HUB_OFFLINE=1``).
    """
    name = str(name_or_path)
    if name in MODEL_ASSETS:
        return str(fetch(name))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"The folder {name} has no config.json, so it is not a saved model. Point to the "
                "folder you passed to model.save_pretrained(...)."
            )
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelLoadError(f"No model folder at {name}. Check the path (relative paths start from the notebook's folder).")
    if hub_offline():
        raise ModelLoadError(
            f"'{name}' is not a packaged model or a local folder, and the Hugging Face Hub is "
            f"offline (HF_HUB_OFFLINE=1). Use a packaged model ({', '.join(repr(m) for m in MODEL_ASSETS)}), "
            "a folder saved with save_pretrained, or go online and unset HF_HUB_OFFLINE."
        )
    return name


def _from_pretrained(loader, name: str, source: str, **kwargs):
    """Call a ``from_pretrained`` and turn download failures into one actionable error."""
    try:
        return loader.from_pretrained(source, **kwargs)
    except OSError as error:
        raise ModelLoadError(
            f"Could not load '{name}' ({error.__class__.__name__}: {str(error).splitlines()[0]}). "
            "If it is a Hub id, check the spelling and your connection; offline, use a packaged "
            f"model ({', '.join(repr(m) for m in MODEL_ASSETS)}) or a local folder."
        ) from error


def load_tokenizer(name_or_path: str | os.PathLike = DEFAULT_ENCODER) -> PreTrainedTokenizerBase:
    """Load the tokenizer that belongs to a model."""
    source = resolve_model_source(name_or_path)
    return _from_pretrained(AutoTokenizer, str(name_or_path), source)


POOLINGS = ("cls", "mean")


def load_classifier(
    name_or_path: str | os.PathLike = DEFAULT_ENCODER,
    labels: tuple[str, ...] | list[str] = SENTIMENT_LABELS,
    dtype: torch.dtype = torch.float32,
    pooling: str = "cls",
    **kwargs,
) -> PreTrainedModel:
    """Load an encoder with a sequence-classification head for ``labels``.

    ``pooling`` says what the head reads: ``"cls"`` (transformers' standard head: the
    first token's vector through BERT's pooler layer) or ``"mean"`` (the average of all
    real token vectors, the pooling all-MiniLM-L6-v2 was trained with; BERT-style encoders
    only). For a pretrained encoder such as MiniLM the head is new (randomly initialised
    from torch's current seed): seed first for a reproducible start. Extra keyword
    arguments go to ``from_pretrained`` (e.g. ``hidden_dropout_prob=0.2``); a dropout
    outside [0, 1) raises ``SettingsError`` before the model loads.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    check_dropout_overrides(kwargs)
    source = resolve_model_source(name_or_path)
    loader = AutoModelForSequenceClassification if pooling == "cls" else MeanPoolingClassifier
    return _from_pretrained(
        loader,
        str(name_or_path),
        source,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        dtype=dtype,
        **kwargs,
    )


def mean_pool(token_vectors: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The average of each sequence's token vectors over its real tokens (padding left out).

    >>> vectors = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])
    >>> mean_pool(vectors, torch.tensor([[1, 1, 0]]))
    tensor([[2., 3.]])
    """
    mask = attention_mask.unsqueeze(-1).to(token_vectors.dtype)
    return (token_vectors * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MeanPoolingBertConfig(BertConfig):
    """A BERT configuration whose classifier reads mean-pooled token vectors.

    Its own ``model_type`` makes a saved model reload with the right head through
    ``AutoModelForSequenceClassification`` (wherever ``utils.models`` is imported), and
    fail with a clear error elsewhere, instead of silently loading the [CLS] head.
    """

    model_type = "bert-mean-pooling"


class MeanPoolingClassifier(BertPreTrainedModel):
    """A BERT encoder with a classification head on the mean of its token vectors.

    Sentence-embedding models such as all-MiniLM-L6-v2 were trained with mean pooling
    (Reimers & Gurevych 2019), so their mean token vector is meaningful from the start,
    while their [CLS] vector and pooler layer were never trained for it.
    """

    config_class = MeanPoolingBertConfig

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        logits = self.classifier(self.dropout(mean_pool(hidden, attention_mask)))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(MeanPoolingBertConfig.model_type, MeanPoolingBertConfig)
AutoModelForSequenceClassification.register(MeanPoolingBertConfig, MeanPoolingClassifier)


def load_causal_lm(
    name_or_path: str | os.PathLike = DEFAULT_CAUSAL_LM, dtype: torch.dtype = torch.float32, **kwargs
) -> PreTrainedModel:
    """Load a causal (next-token) language model such as SmolLM2."""
    source = resolve_model_source(name_or_path)
    return _from_pretrained(AutoModelForCausalLM, str(name_or_path), source, dtype=dtype, **kwargs)


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, or of trainable ones (``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def freeze_lower_layers(model: torch.nn.Module, num_layers: int, freeze_embeddings: bool = True) -> int:
    """Stop training the embeddings and the first ``num_layers`` encoder layers.

    Sets ``requires_grad=False`` on their parameters (build the optimizer afterwards, or
    pass only trainable parameters to it) and returns how many parameters were frozen.
    Works for BERT-style encoders whose base model has ``embeddings`` and
    ``encoder.layer`` (MiniLM, BERT, RoBERTa, DistilBERT's ``transformer.layer`` too).
    """
    base = model.base_model
    encoder = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    layers = getattr(encoder, "layer", None)
    if layers is None or not hasattr(base, "embeddings"):
        raise ValueError(f"{type(model).__name__} has no embeddings + encoder layers to freeze")
    if not 0 <= num_layers <= len(layers):
        raise ValueError(f"num_layers must be between 0 and {len(layers)}, not {num_layers}")
    modules = ([base.embeddings] if freeze_embeddings else []) + list(layers[:num_layers])
    frozen = 0
    for module in modules:
        for parameter in module.parameters():
            if parameter.requires_grad:
                parameter.requires_grad = False
                frozen += parameter.numel()
    return frozen


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Switch ``model`` to evaluation mode (dropout off) for a block, then restore its mode.

    >>> layer = torch.nn.Dropout(0.5).train()
    >>> with eval_mode(layer):
    ...     layer.training
    False
    >>> layer.training
    True

    The previous mode comes back even when the block raises, so an interrupted evaluation
    never leaves a model silently training without dropout, or evaluating with it.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)

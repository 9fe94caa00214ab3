"""Token counts and billable-token estimates for OpenAI-format fine-tuning data, offline.

OpenAI's gpt-4o and gpt-4.1 models tokenize with the ``o200k_base`` encoding (tiktoken's own
model table says so: ``tiktoken.encoding_name_for_model("gpt-4.1")``). Tokens are counted with
tiktoken itself; ``load_encoding`` builds tiktoken's encoding from a local, checksummed file,
so nothing is downloaded.

The method follows the OpenAI cookbook's "Data preparation and analysis for chat model
fine-tuning" (openai/openai-cookbook, examples/Chat_finetuning_data_prep.ipynb): the text of
each message, plus a few tokens of formatting per message and per name, plus the tokens that
prime the reply. Those overheads are the cookbook's approximation of the hosted chat format,
not something tiktoken can see. Three of the cookbook's bugs are fixed here:

1. it counts with ``cl100k_base`` (the encoding of gpt-3.5-turbo and gpt-4), not ``o200k_base``;
2. it encodes every value of a message, so the integer ``weight`` crashes it; here only
   ``role``, ``content`` and ``name`` are text that is counted;
3. it prints the 0.1 and 0.9 quantiles labelled p5 / p95; here labels follow the quantiles.

The default number of epochs is the rule the cookbook gives for the hosted service, and
billable tokens are the training file's tokens (each example capped at the context limit, as
in the cookbook) times the epochs. No price is built in: prices change, so pass your own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tiktoken

from utils.openai_format import CHAT, PREFERENCE, record_conversations, record_problems

ENCODINGS_ASSET = "openai-encodings"

# Where tiktoken 0.14 downloads each encoding, and the sha256 it requires of the file
# (tiktoken_ext/openai_public.py); the local file must be the very same bytes.
ENCODING_FILES: dict[str, tuple[str, str]] = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

# The cookbook's per-message overheads (its num_tokens_from_messages defaults).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

# The cookbook's rule for the hosted service's default number of epochs.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


class EncodingError(RuntimeError):
    """An encoding file is missing or is not the file tiktoken expects. The message says what to do."""


# ---------------------------------------------------------------------------------------- encodings


def load_encoding(name: str = "o200k_base", folder: str | os.PathLike | None = None) -> tiktoken.Encoding:
    """tiktoken's own ``name`` encoding, built from ``<folder>/<name>.tiktoken`` without the network.

    ``folder`` defaults to the course asset ``"openai-encodings"`` (``utils.assets.fetch``).
    The file's sha256 is checked against the one tiktoken pins; then tiktoken is pointed at a
    private cache holding it (``TIKTOKEN_CACHE_DIR``, for the duration of the call), so the
    encoding is exactly what ``tiktoken.get_encoding(name)`` gives online.
    """
    if name not in ENCODING_FILES:
        raise EncodingError(f"unknown encoding {name!r}; available offline: {', '.join(ENCODING_FILES)}")
    if folder is None:
        from utils.assets import fetch

        folder = fetch(ENCODINGS_ASSET)
    path = Path(folder) / f"{name}.tiktoken"
    url, expected_sha256 = ENCODING_FILES[name]
    _check_encoding_file(path, expected_sha256)
    with _tiktoken_cache_holding(path, url):
        return tiktoken.get_encoding(name)


def _check_encoding_file(path: Path, expected_sha256: str) -> None:
    if not path.is_file():
        raise EncodingError(f"{path} does not exist: fetch the encodings with utils.assets.fetch({ENCODINGS_ASSET!r})")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected_sha256:
        raise EncodingError(
            f"{path} is not the file tiktoken expects (sha256 {actual}, expected {expected_sha256}): "
            "it is damaged or a different version; delete it and fetch the asset again"
        )


@contextmanager
def _tiktoken_cache_holding(path: Path, url: str):
    """A temporary tiktoken cache where ``url``'s file is ``path``'s copy (tiktoken names it by sha1 of the url)."""
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="tiktoken-") as cache:
        shutil.copyfile(path, Path(cache) / hashlib.sha1(url.encode()).hexdigest())
        os.environ["TIKTOKEN_CACHE_DIR"] = cache
        try:
            yield
        finally:
            if previous is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = previous


# ----------------------------------------------------------------------------------------- counting


def count_text_tokens(text: str, encoding: tiktoken.Encoding) -> int:
    """Tokens of ``text``; special-token text such as ``<|endoftext|>`` counts as ordinary text."""
    return len(encoding.encode_ordinary(text))


def count_chat_tokens(messages: Sequence[dict], encoding: tiktoken.Encoding) -> int:
    """Tokens of a conversation as the cookbook counts them: per message ``TOKENS_PER_MESSAGE``
    plus its role and content (and ``TOKENS_PER_NAME`` plus the name, if any), then
    ``REPLY_PRIMING_TOKENS``. Other keys (``weight``) are not text and are not counted."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        total += count_text_tokens(message["role"], encoding) + count_text_tokens(message["content"], encoding)
        if "name" in message:
            total += TOKENS_PER_NAME + count_text_tokens(message["name"], encoding)
    return total


def count_assistant_tokens(messages: Sequence[dict], encoding: tiktoken.Encoding, trained_only: bool = False) -> int:
    """Tokens of the assistant messages' content (with ``trained_only``, of those without ``weight: 0``)."""
    return sum(
        count_text_tokens(message["content"], encoding)
        for message in messages
        if message["role"] == "assistant" and not (trained_only and message.get("weight") == 0)
    )


def count_record_tokens(record: dict, encoding: tiktoken.Encoding) -> int:
    """Tokens of a chat record, or of a preference record's longer conversation (input plus one output).

    A record too malformed to count raises ValueError listing its problems (``record_problems``).
    """
    try:
        return max(count_chat_tokens(messages, encoding) for messages in record_conversations(record))
    except (KeyError, TypeError, AttributeError, ValueError):
        raise ValueError(_uncountable(record)) from None


def _uncountable(record: object) -> str:
    """Why a record cannot be counted: its problems as a chat or a preference record."""
    kind = PREFERENCE if isinstance(record, dict) and "input" in record else CHAT
    problems = record_problems(record, kind) or {"data_type": ["it is not a chat or preference record"]}
    listed = "; ".join(f"{category}: {', '.join(details)}" for category, details in problems.items())
    return f"cannot count the tokens of this {kind} record ({listed}); check the file with validate_files first"


def count_template_tokens(record: dict, tokenizer) -> int:
    """Tokens of the same record rendered by a Hugging Face tokenizer's chat template (the
    longer conversation of a preference record). Templates may add text of their own, such as
    SmolLM2's default system prompt when a conversation has none."""
    return max(
        len(tokenizer.apply_chat_template(_plain(messages), tokenize=True, return_dict=True)["input_ids"])
        for messages in record_conversations(record)
    )


def compare_token_counts(records: Iterable[dict], encoding: tiktoken.Encoding, tokenizer) -> dict[str, list[int]]:
    """Per-record token counts with tiktoken's ``encoding`` and with ``tokenizer``'s chat template,
    keyed by the encoding's name and the last part of the tokenizer's ``name_or_path`` (a folder
    or Hub name; the class name if it has none)."""
    records = list(records)
    label = Path(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__).name
    return {
        encoding.name: [count_record_tokens(record, encoding) for record in records],
        label: [count_template_tokens(record, tokenizer) for record in records],
    }


def _plain(messages: Sequence[dict]) -> list[dict]:
    return [{key: value for key, value in message.items() if key != "weight"} for message in messages]


def describe_distribution(values: Sequence[float], low: float = 0.05, high: float = 0.95) -> dict[str, float]:
    """min, max, mean, median and the ``low`` and ``high`` quantiles, labelled by their percent
    (``p5``/``p95`` for 0.05/0.95: the labels cannot disagree with the numbers)."""
    if len(values) == 0:
        raise ValueError("give at least one value")
    if not 0 <= low <= high <= 1:
        raise ValueError("quantiles must satisfy 0 <= low <= high <= 1")
    array = np.asarray(values, dtype=float)
    return {
        "min": float(array.min()),
        "max": float(array.max()),
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        f"p{low * 100:g}": float(np.quantile(array, low)),
        f"p{high * 100:g}": float(np.quantile(array, high)),
    }


# ------------------------------------------------------------------------------------------ billing


def default_epochs(n_train_examples: int) -> int:
    """The hosted service's default number of epochs, by the cookbook's rule: 3, raised for
    small files so that about ``MIN_TARGET_EXAMPLES`` examples are seen (at most 25 epochs),
    lowered for large ones so that about ``MAX_TARGET_EXAMPLES`` are (at least 1)."""
    if n_train_examples < 1:
        raise ValueError("the training file has no examples")
    if n_train_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_train_examples)
    if n_train_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_train_examples)
    return TARGET_EPOCHS


@dataclass(frozen=True)
class BillingEstimate:
    """Billable training tokens of one training file."""

    n_examples: int
    n_over_limit: int  # examples longer than the context limit: truncated, billed up to the limit
    tokens_per_epoch: int
    n_epochs: int
    billable_tokens: int

    def cost(self, usd_per_million_tokens: float) -> float:
        """Cost in US dollars at a price you look up (and date) yourself."""
        return self.billable_tokens * usd_per_million_tokens / 1e6

    def __str__(self) -> str:
        over = f" ({self.n_over_limit} over the context limit, capped)" if self.n_over_limit else ""
        return (
            f"{self.n_examples} training examples{over}: {self.tokens_per_epoch:,} tokens per epoch "
            f"x {self.n_epochs} epochs = {self.billable_tokens:,} billable tokens"
        )


def estimate_billing(example_tokens: Sequence[int], context_limit: int, n_epochs: int | None = None) -> BillingEstimate:
    """Billable tokens of a training file from each example's token count: every example
    counts up to ``context_limit`` tokens, times ``n_epochs`` (default: ``default_epochs``).
    Validation files are not billed."""
    if context_limit < 1:
        raise ValueError("context_limit must be a positive number of tokens")
    epochs = default_epochs(len(example_tokens)) if n_epochs is None else n_epochs
    per_epoch = sum(min(context_limit, tokens) for tokens in example_tokens)
    over = sum(tokens > context_limit for tokens in example_tokens)
    return BillingEstimate(len(example_tokens), over, per_epoch, epochs, per_epoch * epochs)

"""Token counts with tiktoken's own encodings (offline), the epoch rule and billable tokens."""

import functools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
import tiktoken_ext.openai_public

from utils.models import load_tokenizer
from utils.openai_format import read_records, validate_files
from utils.token_costs import (
    ENCODING_FILES,
    ENCODINGS_ASSET,
    EncodingError,
    compare_token_counts,
    count_assistant_tokens,
    count_chat_tokens,
    count_record_tokens,
    count_template_tokens,
    count_text_tokens,
    default_epochs,
    describe_distribution,
    estimate_billing,
    load_encoding,
)

DATA = Path(__file__).parent / "data_files" / "openai"


@pytest.fixture(scope="module")
def encodings_folder() -> Path:
    from utils.assets import ASSETS, fetch

    if ENCODINGS_ASSET not in ASSETS:
        pytest.skip(f"the course asset {ENCODINGS_ASSET!r} is not registered in utils.assets")
    return fetch(ENCODINGS_ASSET)


@pytest.fixture(scope="module")
def o200k(encodings_folder):
    return load_encoding("o200k_base")


@pytest.fixture(scope="module")
def cl100k(encodings_folder):
    return load_encoding("cl100k_base", encodings_folder)


@pytest.fixture(scope="module")
def chat_records():
    return read_records(DATA / "chat_train.jsonl")


def tiktoken_chat_count(messages, encoding) -> int:
    """The expected count, spelled out with tiktoken's encode."""
    total = 3
    for message in messages:
        total += 3 + len(encoding.encode(message["role"])) + len(encoding.encode(message["content"]))
        if "name" in message:
            total += 1 + len(encoding.encode(message["name"]))
    return total


# --------------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("name", list(ENCODING_FILES))
def test_pinned_files_are_the_ones_tiktoken_itself_asks_for(name, monkeypatch):
    asked = {}

    def record_request(url, expected_hash=None):
        asked.update(url=url, expected_hash=expected_hash)
        raise LookupError("stop here: nothing is downloaded")

    monkeypatch.setattr(tiktoken_ext.openai_public, "load_tiktoken_bpe", record_request)
    with pytest.raises(LookupError):
        getattr(tiktoken_ext.openai_public, name)()
    assert (asked["url"], asked["expected_hash"]) == ENCODING_FILES[name]


@pytest.mark.parametrize(
    "name, ids, n_vocab", [("o200k_base", [24912, 2375], 200_019), ("cl100k_base", [15339, 1917], 100_277)]
)
def test_load_encoding_gives_tiktokens_encoding_without_the_network(name, ids, n_vocab, encodings_folder, monkeypatch):
    def no_network(blobpath):
        raise AssertionError(f"tiktoken tried to download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # build it afresh, not from tiktoken's memory
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "left as it was")
    encoding = load_encoding(name, encodings_folder)
    assert isinstance(encoding, tiktoken.Encoding) and encoding.name == name
    assert encoding.encode("hello world") == ids and encoding.n_vocab == n_vocab
    assert os.environ["TIKTOKEN_CACHE_DIR"] == "left as it was"


def test_damaged_missing_or_unknown_encodings_get_clear_errors(encodings_folder, tmp_path):
    with pytest.raises(EncodingError, match="does not exist"):
        load_encoding("o200k_base", tmp_path)
    shutil.copyfile(encodings_folder / "o200k_base.tiktoken", tmp_path / "o200k_base.tiktoken")
    with (tmp_path / "o200k_base.tiktoken").open("ab") as handle:
        handle.write(b"extra")
    with pytest.raises(EncodingError, match="not the file tiktoken expects"):
        load_encoding("o200k_base", tmp_path)
    with pytest.raises(EncodingError, match="unknown encoding"):
        load_encoding("p50k_base", tmp_path)


# ---------------------------------------------------------------------------------------- counting


def test_chat_token_counts_equal_tiktokens(chat_records, o200k, cl100k):
    for encoding in (o200k, cl100k):
        for record in chat_records:
            assert count_chat_tokens(record["messages"], encoding) == tiktoken_chat_count(record["messages"], encoding)
    assert [count_record_tokens(r, o200k) for r in chat_records] == [40, 64, 39, 23, 60]
    assert [count_record_tokens(r, cl100k) for r in chat_records] == [40, 64, 40, 23, 60]


def test_weight_does_not_crash_the_count_as_it_does_the_cookbooks(chat_records, o200k):
    messages = chat_records[1]["messages"]  # holds "weight": 0
    with pytest.raises(TypeError):  # the cookbook encodes every value of a message, the weight included
        [o200k.encode(value) for message in messages for value in message.values()]
    assert count_chat_tokens(messages, o200k) == 64
    assert count_assistant_tokens(messages, o200k) == 2 * len(o200k.encode("positive"))
    assert count_assistant_tokens(messages, o200k, trained_only=True) == len(o200k.encode("positive"))


def test_encodings_differ_so_the_cookbooks_cl100k_count_is_not_gpt4os(o200k, cl100k):
    text = "Ein großartiger Film, der jede Träne verdient."
    assert count_text_tokens(text, o200k) == len(o200k.encode(text))
    assert count_text_tokens(text, o200k) != count_text_tokens(text, cl100k)


def test_special_token_text_counts_as_ordinary_text(o200k):
    with pytest.raises(ValueError):
        o200k.encode("<|endoftext|>")
    assert count_text_tokens("<|endoftext|>", o200k) == len(o200k.encode("<|endoftext|>", disallowed_special=()))


def test_preference_records_count_their_longer_conversation(o200k):
    record = read_records(DATA / "preference_train.jsonl", kind="preference")[2]
    prompt = record["input"]["messages"]
    both = [count_chat_tokens(prompt + record[key], o200k) for key in ("preferred_output", "non_preferred_output")]
    assert both[0] < both[1] and count_record_tokens(record, o200k) == both[1]


def test_template_counts_compare_with_tiktokens(chat_records, o200k):
    tokenizer = load_tokenizer("smollm2")
    counts = compare_token_counts(chat_records, o200k, tokenizer)
    assert list(counts) == ["o200k_base", "smollm2"]  # the folder's name, not its path
    assert counts["o200k_base"] == [count_record_tokens(r, o200k) for r in chat_records]
    plain = [{k: v for k, v in m.items() if k != "weight"} for m in chat_records[3]["messages"]]
    rendered = tokenizer.apply_chat_template(plain, tokenize=True, return_dict=True)["input_ids"]
    assert counts["smollm2"][3] == len(rendered) == count_template_tokens(chat_records[3], tokenizer)
    assert counts["smollm2"] == [41, 68, 38, 44, 65]  # record 4 has no system message: SmolLM2 adds its own


def test_validator_flags_records_over_a_context_limit_in_o200k_tokens(o200k):
    count = functools.partial(count_record_tokens, encoding=o200k)
    report = validate_files(
        DATA / "chat_defects_train.jsonl", context_limit=100, count_tokens=count, max_line_bytes=4096
    )
    assert report.lines("over_context_limit") == [(str(DATA / "chat_defects_train.jsonl"), 19)]


# ----------------------------------------------------------------------------------- distribution


def test_quantiles_are_labelled_by_what_they_are():
    values = list(range(1, 21))
    summary = describe_distribution(values)
    assert summary["p5"] == np.quantile(values, 0.05) and summary["p95"] == np.quantile(values, 0.95)
    assert summary["p5"] != np.quantile(values, 0.1)  # what the cookbook prints under the label p5
    assert (summary["min"], summary["max"], summary["mean"], summary["median"]) == (1, 20, 10.5, 10.5)
    assert set(describe_distribution(values, 0.1, 0.9)) == {"min", "max", "mean", "median", "p10", "p90"}
    with pytest.raises(ValueError):
        describe_distribution([])


# ---------------------------------------------------------------------------------------- billing


@pytest.mark.parametrize(
    "n_examples, epochs", [(1, 25), (4, 25), (5, 20), (33, 3), (34, 3), (8_333, 3), (8_334, 2), (30_000, 1)]
)
def test_default_epochs_follow_the_cookbooks_rule(n_examples, epochs):
    assert default_epochs(n_examples) == epochs


def test_default_epochs_need_examples():
    with pytest.raises(ValueError):
        default_epochs(0)


def test_billable_tokens_cap_each_example_and_multiply_by_epochs():
    estimate = estimate_billing([10, 200, 30], context_limit=100)
    assert (estimate.n_examples, estimate.n_over_limit, estimate.tokens_per_epoch) == (3, 1, 140)
    assert (estimate.n_epochs, estimate.billable_tokens) == (25, 3_500)
    assert estimate.cost(usd_per_million_tokens=2.0) == pytest.approx(0.007)
    assert "3,500 billable tokens" in str(estimate) and "1 over the context limit" in str(estimate)
    assert estimate_billing([10, 200, 30], context_limit=100, n_epochs=2).billable_tokens == 280
    with pytest.raises(ValueError):
        estimate_billing([10], context_limit=0)

"""The strict validator of OpenAI-format fine-tuning files, and conversion to TRL's formats."""

import gzip
import json
from pathlib import Path

import datasets
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from utils.language_modeling import IGNORE_INDEX
from utils.models import load_tokenizer
from utils.openai_format import (
    CATEGORIES,
    ISSUES_KEPT,
    FormatError,
    loss_segments,
    read_records,
    record_conversations,
    record_problems,
    to_trl_dpo,
    to_trl_sft,
    tokenize_with_loss_mask,
    validate_files,
    write_jsonl,
)
from utils.token_costs import count_record_tokens, load_encoding

DATA = Path(__file__).parent / "data_files" / "openai"
CHAT_DEFECTS = DATA / "chat_defects_train.jsonl"
CHAT_DEFECTS_VALIDATION = DATA / "chat_defects_validation.jsonl"

# chat_defects_train.jsonl holds three valid records, then one defect per category (and its
# validation file one record shared with training); line 20 is over the byte limit used here.
EXPECTED_CHAT_LINES = {
    "blank_line": 4,
    "not_utf8": 5,
    "invalid_json": 6,
    "too_deeply_nested": 7,
    "data_type": 8,
    "missing_messages_list": 9,
    "record_unrecognized_key": 10,
    "message_missing_key": 11,
    "message_unrecognized_key": 12,
    "unrecognized_role": 13,
    "missing_content": 14,
    "example_missing_assistant_message": 15,
    "invalid_weight": 16,
    "no_trained_assistant_message": 17,
    "duplicate": 18,
    "over_context_limit": 19,
    "line_too_long": 20,
}
EXPECTED_PREFERENCE_LINES = {
    "malformed_preference": 3,
    "missing_messages_list": 4,
    "message_unrecognized_key": 5,
    "record_unrecognized_key": 6,
    "unrecognized_role": 7,
    "duplicate": 8,
}

SYSTEM = {"role": "system", "content": "You label the sentiment of movie reviews."}
USER = {"role": "user", "content": "Review: Pure joy."}
ANSWER = {"role": "assistant", "content": "positive"}


def count_words(record: dict) -> int:
    """A stand-in token counter, so the validator's tests do not need an encoding."""
    return sum(len(message["content"].split()) for message in record["messages"])


def validate_chat_defects(**options):
    return validate_files(
        CHAT_DEFECTS,
        CHAT_DEFECTS_VALIDATION,
        context_limit=50,
        count_tokens=count_words,
        max_line_bytes=4096,
        **options,
    )


def preference(prompt=(SYSTEM, USER), chosen="positive", rejected="negative") -> dict:
    return {
        "input": {"messages": list(prompt)},
        "preferred_output": [{"role": "assistant", "content": chosen}],
        "non_preferred_output": [{"role": "assistant", "content": rejected}],
    }


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("smollm2")


# ----------------------------------------------------------------------------------- the fixture


def test_chat_fixture_gives_exactly_one_line_per_category():
    report = validate_chat_defects()
    expected_counts = dict.fromkeys([*EXPECTED_CHAT_LINES, "train_validation_overlap"], 1)
    assert report.counts == expected_counts
    for category, line in EXPECTED_CHAT_LINES.items():
        assert report.lines(category) == [(str(CHAT_DEFECTS), line)], category
    assert report.lines("train_validation_overlap") == [(str(CHAT_DEFECTS_VALIDATION), 2)]
    assert report.lines_read == {str(CHAT_DEFECTS): 20, str(CHAT_DEFECTS_VALIDATION): 2}
    assert not report.ok


def test_preference_fixture_gives_exactly_one_line_per_category():
    path = DATA / "preference_defects.jsonl"
    report = validate_files(path, kind="preference")
    assert report.counts == dict.fromkeys(EXPECTED_PREFERENCE_LINES, 1)
    for category, line in EXPECTED_PREFERENCE_LINES.items():
        assert report.lines(category) == [(str(path), line)], category


def test_clean_files_pass_and_say_so():
    chat = validate_files(DATA / "chat_train.jsonl", DATA / "chat_validation.jsonl")
    preference = validate_files(
        DATA / "preference_train.jsonl", DATA / "preference_validation.jsonl", kind="preference"
    )
    assert chat.ok and preference.ok and chat.issues == () and chat.counts == {}
    assert "no problems found" in str(chat) and "chat_train.jsonl (5 lines)" in str(chat)


def test_report_text_names_file_line_category_and_fix():
    text = str(validate_chat_defects())
    assert "18 problems in 18 categories" in text
    assert "chat_defects_train.jsonl line 16: message 3 has the weight 0.5" in text
    assert f"Fix: {CATEGORIES['invalid_weight']}" in text
    assert "chat_defects_validation.jsonl line 2: same record as" in text
    assert "byte 0xe9 at column 47 is not UTF-8" in text


def test_strict_mode_raises_one_error_listing_every_problem():
    with pytest.raises(FormatError) as raised:
        validate_chat_defects(strict=True)
    message = str(raised.value)
    assert all(category in message for category in [*EXPECTED_CHAT_LINES, "train_validation_overlap"])
    assert raised.value.report.counts["duplicate"] == 1
    validate_files(DATA / "chat_train.jsonl", strict=True)  # a clean file does not raise
    with pytest.raises(FormatError, match="missing_messages_list"):
        read_records(CHAT_DEFECTS)


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="kind must be one of"):
        validate_files(DATA / "chat_train.jsonl", kind="dpo")
    with pytest.raises(ValueError, match="needs count_tokens"):
        validate_files(DATA / "chat_train.jsonl", context_limit=10)
    with pytest.raises(ValueError, match="same file"):
        validate_files(DATA / "chat_train.jsonl", DATA / "chat_train.jsonl")
    with pytest.raises(ValueError, match="unknown category"):
        validate_files(DATA / "chat_train.jsonl").lines("typo")


# ------------------------------------------------------------------------- damaged or hostile files


def only_issue(path: Path, **options):
    report = validate_files(path, **options)
    assert len(report.issues) == 1, report.issues
    return report.issues[0]


def test_missing_file_folder_and_oversized_file_are_unreadable(tmp_path):
    assert only_issue(tmp_path / "nope.jsonl").category == "unreadable_file"
    assert "is a folder" in only_issue(tmp_path).detail
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"messages": [USER, ANSWER]}) + "\n")
    issue = only_issue(big, max_file_bytes=10)
    assert (issue.category, issue.line) == ("unreadable_file", 0) and "over the limit of 10" in issue.detail


def test_empty_file_is_reported(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert only_issue(tmp_path / "empty.jsonl").category == "empty_file"


@pytest.mark.parametrize(
    "content, words",
    [
        (gzip.compress(b'{"messages": []}\n', mtime=0), "gzip"),
        (b"PK\x03\x04\x14\x00\x00\x00", "zip"),
        ('{"messages": []}\n'.encode("utf-16"), "UTF-16"),
        (bytes(range(256)) * 4, "NUL bytes"),
    ],
    ids=["gzip", "zip", "utf-16", "nul-bytes"],  # stable names: parallel workers must collect the same tests
)
def test_binary_files_are_refused_before_parsing(tmp_path, content, words):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    issue = only_issue(path)
    assert issue.category == "binary_file" and words in issue.detail


def test_a_huge_line_is_skipped_unread_and_reading_goes_on(tmp_path):
    path = tmp_path / "huge.jsonl"
    valid = json.dumps({"messages": [USER, ANSWER]}).encode()
    path.write_bytes(b'{"messages": "' + b"x" * (9 * 2**20) + b'"}\n' + valid + b"\n")
    report = validate_files(path)
    assert report.counts == {"line_too_long": 1} and report.lines("line_too_long") == [(str(path), 1)]
    assert report.lines_read == {str(path): 2}


@pytest.mark.parametrize(
    "line, category, words",
    [
        (b"[" * 100_000 + b"]" * 100_000, "too_deeply_nested", "too deeply"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "too_deeply_nested", "more than 32 levels"),
        (b'{"messages": [], "messages": []}', "invalid_json", 'key "messages" appears twice'),
        (b'{"weight": NaN}', "invalid_json", "NaN is not valid JSON"),
        (b'{"n": ' + b"9" * 5000 + b"}", "invalid_json", "digits"),
        (b"{'messages': []}", "invalid_json", "column 2"),
        (b'"just a string"', "data_type", "a string, not an object"),
        (b"caf\xe9", "not_utf8", "0xe9 at column 4"),
        (b"   ", "blank_line", "empty"),
    ],
)
def test_hostile_lines_get_a_clear_category(tmp_path, line, category, words):
    path = tmp_path / "data.jsonl"
    path.write_bytes(line + b"\n" + json.dumps({"messages": [USER, ANSWER]}).encode() + b"\n")
    issue = only_issue(path)
    assert (issue.category, issue.line) == (category, 1) and words in issue.detail


def test_many_bad_lines_are_counted_exactly_but_kept_only_in_part(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b"\xff\n" * (ISSUES_KEPT + 50))
    report = validate_files(path)
    assert report.counts == {"not_utf8": ISSUES_KEPT + 50, "empty_file": 1}
    assert len(report.lines("not_utf8")) == ISSUES_KEPT
    assert f"and {ISSUES_KEPT + 45} more" in str(report)


# ---------------------------------------------------------------------------------- record checks


@pytest.mark.parametrize(
    "record, category, words",
    [
        ({"messages": [USER, {**ANSWER, "weight": True}]}, "invalid_weight", "weight true"),
        ({"messages": [{**USER, "weight": 1}, ANSWER]}, "invalid_weight", "not an assistant message"),
        ({"messages": [USER, {**ANSWER, "weight": "0"}]}, "invalid_weight", 'weight "0"'),
        ({"messages": [USER, ANSWER], "tools": [{"type": "function"}]}, "record_unrecognized_key", '"tools"'),
        ({"messages": [USER, "positive"]}, "data_type", "message 2 is a string"),
        ({"messages": [USER, {**ANSWER, "content": "  "}]}, "missing_content", "only whitespace"),
        ({"messages": [USER, {**ANSWER, "content": ["positive"]}]}, "missing_content", "an array, not text"),
        ({"messages": [{"content": "hi"}, ANSWER]}, "message_missing_key", 'no "role"'),
        ({"messages": {"role": "user"}}, "missing_messages_list", "an object, not an array"),
        (preference(), "missing_messages_list", 'use kind="preference"'),
    ],
)
def test_chat_record_problems(record, category, words):
    problems = record_problems(record, "chat")
    assert category in problems and words in problems[category][0], problems


@pytest.mark.parametrize(
    "change, words",
    [
        ({"input": None}, '"input" is missing'),
        ({"input": [USER]}, '"input" is an array, not an object'),
        ({"preferred_output": []}, "holds 0 item(s)"),
        ({"non_preferred_output": [ANSWER, ANSWER]}, "holds 2 item(s)"),
        ({"preferred_output": [{**USER}]}, "has the role user, not assistant"),
        ({"non_preferred_output": [{**ANSWER}]}, "identical"),
        ({"input": {"messages": [USER, ANSWER]}}, "ends with an assistant message"),
    ],
)
def test_malformed_preference_records(change, words):
    record = {key: value for key, value in {**preference(), **change}.items() if value is not None}
    problems = record_problems(record, "preference")
    assert list(problems) == ["malformed_preference"] and words in problems["malformed_preference"][0], problems


def test_openai_dpo_example_with_empty_tools_is_valid():
    record = preference()
    record["input"] |= {"tools": [], "parallel_tool_calls": True}
    assert record_problems(record, "preference") == {}


def test_problems_of_several_messages_in_one_category_share_one_issue(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl([{"messages": [{"role": "user"}, {"role": "assistant"}]}], path)
    report = validate_files(path)
    assert report.counts == {"message_missing_key": 1}
    assert report.issues[0].detail == 'message 1 has no "content"; message 2 has no "content"'


# ------------------------------------------------------------------------------------- conversion


def test_write_and_read_records_round_trip(tmp_path):
    records = read_records(DATA / "chat_train.jsonl")
    path = tmp_path / "out" / "train.jsonl"
    assert write_jsonl(records, path) == len(records) == 5
    assert read_records(path) == records
    assert path.read_bytes().count(b"\n") == 5
    with pytest.raises(TypeError, match="record 1 is a list"):
        write_jsonl([["not", "a", "dict"]], tmp_path / "bad.jsonl")


def test_to_trl_sft_keeps_the_conversation_and_refuses_weight_zero():
    records = read_records(DATA / "chat_train.jsonl")
    named = to_trl_sft(records[2])  # its answer has weight 1 and its user message a name
    assert named["messages"][1] == {"role": "user", "name": "critic", "content": "Review: A tedious, overlong mess."}
    assert named["messages"][2] == {"role": "assistant", "content": "negative"}
    with pytest.raises(ValueError, match="tokenize_with_loss_mask"):
        to_trl_sft(records[1])  # holds an assistant turn with weight 0
    with pytest.raises(ValueError, match="not a valid chat record"):
        to_trl_sft({"messages": [USER]})


def test_to_trl_dpo_gives_prompt_chosen_rejected():
    records = read_records(DATA / "preference_train.jsonl", kind="preference")
    converted = to_trl_dpo(records[2])
    assert set(converted) == {"prompt", "chosen", "rejected"}
    assert converted["prompt"] == records[2]["input"]["messages"]
    assert converted["chosen"] == [{"role": "assistant", "content": "positive"}]
    assert converted["rejected"] == [{"role": "assistant", "content": "It is a film."}]
    with pytest.raises(ValueError, match="malformed_preference"):
        to_trl_dpo({**records[0], "preferred_output": []})


def test_record_conversations_of_both_kinds():
    chat = {"messages": [USER, ANSWER]}
    assert record_conversations(chat) == [[USER, ANSWER]]
    pair = preference(prompt=[USER])
    assert record_conversations(pair) == [[USER, *pair["preferred_output"]], [USER, *pair["non_preferred_output"]]]
    with pytest.raises(ValueError, match="neither"):
        record_conversations({"prompt": "x"})


def trained_text(tokenizer, example) -> list[str]:
    return [text for text, trained in loss_segments(tokenizer, example) if trained]


def test_weight_zero_turns_carry_no_loss(tokenizer):
    messages = read_records(DATA / "chat_train.jsonl")[1]["messages"]  # first answer has weight 0
    example = tokenize_with_loss_mask(tokenizer, messages)
    plain = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    assert example["input_ids"] == tokenizer.apply_chat_template(plain, tokenize=True, return_dict=True)["input_ids"]
    assert example["attention_mask"] == [1] * len(example["input_ids"])
    assert trained_text(tokenizer, example) == ["positive<|im_end|>\n"]
    trained = [label for label in example["labels"] if label != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "positive<|im_end|>\n"

    every_turn = tokenize_with_loss_mask(tokenizer, plain)  # without the weight both answers train
    assert every_turn["input_ids"] == example["input_ids"]
    assert trained_text(tokenizer, every_turn) == ["negative<|im_end|>\n", "positive<|im_end|>\n"]
    segments = loss_segments(tokenizer, every_turn)
    assert "".join(text for text, _ in segments) == tokenizer.decode(every_turn["input_ids"])
    assert [trained for _, trained in segments] == [False, True, False, True]


def test_loss_mask_refuses_what_it_cannot_split(tokenizer):
    with pytest.raises(ValueError, match="starts with an assistant message"):
        tokenize_with_loss_mask(tokenizer, [ANSWER, USER, ANSWER])

    class ReorderingTokenizer:  # renders a shorter conversation with different ids
        def apply_chat_template(self, messages, **options):
            return {"input_ids": [len(messages)] * (2 * len(messages))}

    with pytest.raises(ValueError, match="prefix"):
        tokenize_with_loss_mask(ReorderingTokenizer(), [USER, ANSWER])


def test_sft_trainer_keeps_the_labels_of_a_pretokenized_dataset(tokenizer, tmp_path):
    from trl import SFTConfig, SFTTrainer

    rows = [tokenize_with_loss_mask(tokenizer, r["messages"]) for r in read_records(DATA / "chat_train.jsonl")]
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
    )  # fmt: skip
    args = SFTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", disable_tqdm=True, max_length=None
    )
    trainer = SFTTrainer(
        model=LlamaForCausalLM(config),
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    assert trainer.train_dataset["labels"] == [row["labels"] for row in rows]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert int((batch["labels"][1] != IGNORE_INDEX).sum()) == sum(label != IGNORE_INDEX for label in rows[1]["labels"])


# ---- inputs that used to pass, or gave misleading errors


def chat_line(*messages, **record) -> str:
    return json.dumps({"messages": list(messages), **record})


USER = {"role": "user", "content": "Is this review positive? 'A delight.'"}
ANSWER = {"role": "assistant", "content": "positive"}


def validate_lines(tmp_path, lines, name="train.jsonl", prefix=b"", **options):
    path = tmp_path / name
    path.write_bytes(prefix + "".join(line + "\n" for line in lines).encode("utf-8"))
    before = path.read_bytes()
    report = validate_files(path, **options)
    assert path.read_bytes() == before
    return report


def test_a_chat_that_ends_with_a_user_turn_is_reported(tmp_path):
    report = validate_lines(tmp_path, [chat_line(USER, ANSWER, USER)])
    assert report.counts == {"last_message_not_assistant": 1}
    assert "train.jsonl line 1: the last message has the role user" in str(report)


def test_a_record_over_the_default_context_limit_is_reported(tmp_path):
    long_answer = {"role": "assistant", "content": "good " * 70_000}
    report = validate_lines(tmp_path, [chat_line(USER, long_answer)])
    assert report.counts == {"over_context_limit": 1} and ", over the limit of 65,536" in str(report)
    assert validate_lines(tmp_path, [chat_line(USER, long_answer)], context_limit=None).ok


def test_a_name_that_is_not_text_is_reported(tmp_path):
    report = validate_lines(tmp_path, [chat_line({**USER, "name": 5}, ANSWER)])
    assert report.counts == {"invalid_name": 1} and "message 1 has the name 5" in str(report)


def test_a_byte_order_mark_is_reported_and_the_line_still_checked(tmp_path):
    report = validate_lines(tmp_path, [chat_line(USER, ANSWER)], prefix=b"\xef\xbb\xbf")
    assert report.counts == {"byte_order_mark": 1}
    assert "train.jsonl line 1: the file starts with a UTF-8 byte-order mark (BOM)" in str(report)


def test_a_five_thousand_digit_weight_is_named_as_such(tmp_path):
    line = chat_line(USER, ANSWER).replace('"positive"}', '"positive", "weight": ' + "1" * 5_000 + "}")
    report = validate_lines(tmp_path, [line, chat_line(USER, ANSWER)])
    assert report.counts == {"invalid_json": 1}
    assert "a number with 5,000 digits (starting 11111111...)" in str(report) and len(str(report)) < 1_000


def test_counting_an_unvalidated_record_says_what_is_wrong():
    encoding = load_encoding("o200k_base")
    with pytest.raises(ValueError, match=r"cannot count the tokens of this chat record \(message_missing_key: "
                                         r"message 1 has no \"content\".*check the file with validate_files first"):  # fmt: skip
        count_record_tokens({"messages": [{"role": "user"}]}, encoding)


def test_listings_in_reports_are_capped(tmp_path):
    many_keys = {**USER, **{f"extra{i}": 1 for i in range(20_000)}}
    report = validate_lines(tmp_path, [chat_line(many_keys, ANSWER)])
    assert "and 19,990 more" in str(report) and len(str(report)) < 1_500

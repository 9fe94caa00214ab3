"""The sentiment splits, the Shakespeare corpus, and validation of learners' own files."""

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from utils import data
from utils.data import DataValidationError, load_labelled_file, load_sentiment_dataset, load_shakespeare

FILES = Path(__file__).with_name("data_files")


@pytest.fixture(scope="module")
def reviews():
    return data.read_movie_reviews()


@pytest.fixture(scope="module")
def splits():
    return load_sentiment_dataset()


def test_all_rated_sentences_are_read(reviews):
    assert len(reviews) == 10_605
    assert reviews["id"].is_unique
    assert reviews["rating"].between(-4, 4).all()
    assert (reviews["text"].str.len() > 0).all()


def test_label_rule_leaves_out_near_neutral_sentences():
    assert data.label_from_rating(0.5) == 1 and data.label_from_rating(3.2) == 1
    assert data.label_from_rating(-0.5) == 0 and data.label_from_rating(-2.0) == 0
    assert data.label_from_rating(0.49) is None and data.label_from_rating(0.0) is None


def test_splits_have_the_documented_sizes_and_balance(reviews, splits):
    near_neutral = int((reviews["rating"].abs() < 0.5).sum())
    assert near_neutral == 533
    sizes = {name: len(split) for name, split in splits.items()}
    duplicates = int(reviews["text"].duplicated().sum())
    assert duplicates == 2
    assert sum(sizes.values()) == 10_605 - near_neutral - duplicates
    assert sizes == {"train": 8056, "validation": 1007, "test": 1007}
    assert len(set(splits["train"]["text"]) | set(splits["validation"]["text"]) | set(splits["test"]["text"])) == 10_070
    shares = [np.mean(split["label"]) for split in splits.values()]
    assert max(shares) - min(shares) < 0.01, "stratified splits keep the class balance"
    assert splits["train"].features["label"].names == ["negative", "positive"]


def test_splits_are_disjoint_and_repeatable(splits):
    ids = {name: set(split["id"]) for name, split in splits.items()}
    assert not ids["train"] & ids["validation"] and not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    again = load_sentiment_dataset()
    assert again["test"]["id"] == splits["test"]["id"]
    other = load_sentiment_dataset(seed=7)
    assert set(other["test"]["id"]) != ids["test"]


def test_labels_agree_with_ratings(splits):
    for example in splits["validation"].select(range(200)):
        assert example["label"] == (example["rating"] > 0)


def test_shakespeare_is_split_by_play():
    corpus = load_shakespeare()
    assert len(corpus["train"]) + len(corpus["validation"]) == 37
    assert sorted(corpus["validation"]["play"]) == sorted(data.VALIDATION_PLAYS)
    assert not set(corpus["train"]["play"]) & set(corpus["validation"]["play"])
    assert not set(data.SHAKESPEARE_POEMS) & set(corpus["train"]["play"])
    macbeth = corpus["validation"].filter(lambda row: row["play"] == "macbeth")[0]
    assert macbeth["title"] == "Macbeth" and "Fair is foul, and foul is fair" in macbeth["text"]
    assert "\n\n\n" not in macbeth["text"]


def test_unknown_validation_plays_are_named():
    with pytest.raises(DataValidationError, match="Unknown play.*'hamlet_2'"):
        load_shakespeare(validation_plays=("hamlet_2",))


def test_a_hub_dataset_name_offline_points_to_the_packaged_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataValidationError) as raised:
        load_sentiment_dataset("rotten_tomatoes")
    assert "offline" in str(raised.value) and "load_sentiment_dataset('movie-reviews')" in str(raised.value)


def test_a_local_file_becomes_three_splits(tmp_path):
    rows = ["text,label"] + [f'"review number {i}",{"positive" if i % 2 else "negative"}' for i in range(40)]
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(rows) + "\n")
    splits = load_sentiment_dataset(str(path))
    assert [len(s) for s in splits.values()] == [32, 4, 4]


def test_a_folder_with_a_train_file_keeps_its_own_test_split(tmp_path):
    for split, count in (("train", 40), ("test", 6)):
        rows = ["text,label"] + [f'"{split} {i}",{"positive" if i % 2 else "negative"}' for i in range(count)]
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
    splits = load_sentiment_dataset(str(tmp_path))
    assert len(splits["test"]) == 6 and all(t.startswith("test") for t in splits["test"]["text"])
    assert len(splits["train"]) + len(splits["validation"]) == 40 - 4


# ---------------------------------------------------------------- your own files


def test_a_valid_file_loads_with_a_report_of_duplicates():
    dataset, report = load_labelled_file(FILES / "valid.csv")
    assert report.rows_read == 6 and report.duplicates_dropped == 1 and report.rows_kept == 5
    assert report.conflicting_duplicates == 1
    assert dataset.features["label"].names == ["negative", "positive"]
    assert len(dataset) == 5
    text = str(report)
    assert "dropped: 1" in text and "different labels: 1" in text
    assert "exact duplicates dropped on line(s) 4" in text
    assert "texts with different labels on line(s) 5, 6 are kept" in text


def test_duplicates_can_be_kept_and_are_still_reported():
    dataset, report = load_labelled_file(FILES / "valid.csv", drop_duplicates=False)
    assert len(dataset) == 6 and report.rows_kept == 6 and report.duplicates_dropped == 0
    assert "exact duplicates kept (drop_duplicates=False) on line(s) 4" in str(report)


def test_a_json_array_file_loads_like_json_lines():
    dataset, report = load_labelled_file(FILES / "valid_array.json")
    assert dataset["text"] == ["Great", "Awful", "Fine"] and dataset["label"] == [1, 0, 1]
    assert report.label_counts == {"negative": 1, "positive": 2}


def test_given_label_names_fix_the_class_ids_and_absent_classes_are_noted():
    dataset, report = load_labelled_file(FILES / "valid.csv", label_names=["positive", "negative", "neutral"])
    assert dataset.features["label"].names == ["positive", "negative", "neutral"]
    assert dataset["label"][:2] == [0, 1]
    assert report.label_counts == {"positive": 3, "negative": 2, "neutral": 0}
    assert "no examples of ['neutral']" in str(report)


def test_texts_spanning_lines_are_noted(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('text,label\n"Great\nfun",positive\n"Dull",negative\n', encoding="utf-8")
    dataset, report = load_labelled_file(path)
    assert dataset["text"][0] == "Great\nfun"
    assert "texts spanning several lines start on line(s) 2" in str(report)


def test_a_byte_order_mark_and_extra_columns_are_fine(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffid,text,label\n1,Caf\u00e9 scenes,positive\n2,Dull,negative\n".encode("utf-8"))
    dataset, _ = load_labelled_file(path)
    assert dataset["text"] == ["Caf\u00e9 scenes", "Dull"]


def test_jsonl_with_numeric_labels_loads():
    dataset, report = load_labelled_file(FILES / "valid.jsonl")
    assert dataset.features["label"].names == ["0", "1"]
    assert dataset["label"] == [1, 0, 1]
    assert report.label_counts == {"0": 1, "1": 2}


def test_over_long_texts_are_counted():
    class WordTokenizer:
        def __call__(self, texts):
            return {"input_ids": [t.split() for t in texts]}

    _, report = load_labelled_file(FILES / "valid.csv", tokenizer=WordTokenizer(), max_length=8)
    assert report.too_long == 1 and "longer than 8 tokens" in str(report)
    assert "over-long texts on line(s) 7; the longest has 17 tokens" in str(report)


# Every file here that cannot be used as it is, and what its message must say.
BAD_FILES = [
    ("missing.csv", r"File not found: .*missing\.csv"),
    ("empty.csv", r"empty.csv is empty"),
    ("header_only.csv", r"header but no data rows"),
    ("wrong_columns.csv", r"no column\(s\) 'text', 'label'; the columns are \['review', 'sentiment'\].*text_column='review'"),
    ("semicolon.csv", r"the columns are \['text;label'\].*separate its columns with another character"),
    ("semicolon_commas.csv", r"the columns are \['text;label'\].*another character than ',' \(';' here\)"),
    ("empty_text.csv", r"column 'text' is empty on line\(s\) 3"),
    ("unknown_labels.csv", r"unknown label\(s\) \['negativ', 'neutral'\] on line\(s\) 3, 4"),
    ("single_class.csv", r"only one class \('positive'\).*at least two.*label_column='label'"),
    ("label_spellings.csv", r"spells one label in different ways: 'Positive' / 'positive' \(first on lines 4 / 2\)"),
    ("number_spellings.csv", r"spells one label in different ways: '1' / '1.0' \(first on lines 2 / 4\).*same number"),
    ("mixed_numbers.jsonl", r"spells one label in different ways: '1' / '1.0' \(first on lines 1 / 3\)"),
    ("unicode_forms.csv", r"'ne\\u0301gatif' / 'n\\xe9gatif' \(first on lines 4 / 3\).*look the same but are different"),
    ("zero_width.csv", r"'positive' / 'positive\\u200b' \(first on lines 2 / 4\).*zero-width space"),
    ("missing_label.csv", r"holds 'N/A' on line\(s\) 4, which usually marks a missing label.*label_names"),
    ("duplicate_header.csv", r"the header names the column 'text' 2 times \(columns 1, 3\)"),
    ("duplicate_header.tsv", r"the header names the column 'label' 2 times \(columns 2, 3\)"),
    ("duplicate_keys.jsonl", r"duplicate_keys.jsonl, line 2: the key 'label' appears twice in one object"),
    ("bad_quotes.csv", r"bad_quotes.csv, line 4: a double quote opened on this line seems never to be closed"),
    ("bad_array.json", r"bad_array.json, item 2 of the array: expected a JSON object, got a string"),
    ("wrapped.json", r"holds one JSON object, not an array of examples: its key 'data' holds a list of 2 objects"),
    ("column_lists.json", r"its keys 'text' and 'label' hold one list each"),
    ("text_number.jsonl", r"column 'text' holds a number instead of a text on line\(s\) 2"),
    ("latin1.csv", r"line 3 is not valid UTF-8 \(byte 0xe9 at offset 32\).*Latin-1 reads this file the same.*'é'.*iconv"),
    ("cp1252.csv", r"line 3 is not valid UTF-8 \(byte 0x92.*Windows-1252 \(cp1252; not Latin-1.*'’'.*iconv -f CP1252"),
    ("utf16.tsv", r"utf16.tsv is saved as UTF-16.*iconv -f UTF-16 -t UTF-8"),
    ("workbook.csv", r"workbook.csv is a zip file \(an Excel workbook, for example\)"),
    ("broken.jsonl", r"broken.jsonl, line 3: not valid JSON"),
    ("ragged.csv", r"ragged.csv, line 2: 3 fields but the header has 2. Quote texts"),
    ("ragged.tsv", r"ragged.tsv, line 2: 3 fields but the header has 2. A .tsv file cannot have tabs inside a text"),
    ("notes.xlsx", r"unsupported file type '.xlsx'.*CSV.*\.csv, \.tsv, \.jsonl or \.json"),
]


@pytest.mark.parametrize("filename, expected", BAD_FILES)
def test_bad_files_get_errors_that_say_what_to_fix(filename, expected):
    labels = ["negative", "positive"] if filename == "unknown_labels.csv" else None
    with pytest.raises(DataValidationError, match=expected):
        load_labelled_file(FILES / filename, label_names=labels)


@pytest.mark.parametrize("filename", [name for name, _ in BAD_FILES])
def test_every_error_names_the_file_and_hides_the_library_trace(filename):
    with pytest.raises(DataValidationError) as raised:
        load_labelled_file(FILES / filename, label_names=["negative", "positive"])
    assert filename in str(raised.value), f"{filename}: the message must name the file"
    error = raised.value
    assert error.__cause__ is None and (error.__suppress_context__ or error.__context__ is None), "no library trace"


def test_class_numbers_with_label_names_get_a_specific_hint():
    with pytest.raises(DataValidationError, match=r"seems to store class numbers.*label_names=None"):
        load_labelled_file(FILES / "valid.jsonl", label_names=["negative", "positive"])


def test_labels_written_unlike_label_names_get_a_specific_hint():
    with pytest.raises(DataValidationError, match=r"'negative' and 'Negative' differ only in how they are written"):
        load_labelled_file(FILES / "valid.csv", label_names=["Negative", "Positive"])


def test_a_missing_value_marker_is_a_class_when_label_names_say_so():
    _, report = load_labelled_file(FILES / "missing_label.csv", label_names=["negative", "positive", "N/A"])
    assert report.label_counts == {"negative": 1, "positive": 1, "N/A": 1}


def test_other_column_names_are_used_when_given():
    dataset, _ = load_labelled_file(FILES / "wrong_columns.csv", text_column="review", label_column="sentiment")
    assert dataset.column_names == ["text", "label"] and dataset["text"] == ["Great", "Awful"]


def test_a_tsv_file_is_read_literally_and_quoted_cells_are_noted():
    dataset, report = load_labelled_file(FILES / "valid_quotes.tsv")
    assert dataset["text"] == ['"Great" movie', '"Awful"', "Fine"]
    assert "cells wrapped in double quotes on line(s) 3 keep their quotes" in str(report)


def test_json_lines_may_hold_unicode_line_separators_inside_strings():
    dataset, report = load_labelled_file(FILES / "valid_separators.jsonl")
    assert dataset["text"] == ["Great\u2028fun\x85and\u2029more", "Awful"]
    assert report.rows_read == 2 and report.notes == []


def test_json_lines_saved_as_json_load_like_json_lines():
    dataset, _ = load_labelled_file(FILES / "valid_lines.json")
    assert dataset["text"] == ["Great", "Awful"]


def test_a_column_named_like_an_internal_one_is_an_ordinary_column():
    dataset, _ = load_labelled_file(FILES / "valid_line_column.csv")
    assert dataset["text"] == ["Great", "Awful"]
    dataset, _ = load_labelled_file(FILES / "valid_line_column.csv", text_column="_line")
    assert dataset["text"] == ["7", "8"]


def test_spaces_around_texts_and_labels_are_removed_and_reported():
    dataset, report = load_labelled_file(FILES / "valid_spaces.csv")
    assert dataset["text"] == ["Great", "Awful", "Fine"] and report.label_counts == {"negative": 1, "positive": 2}
    assert "spaces around the texts removed on line(s) 2" in str(report)
    assert "spaces around the labels removed on line(s) 3" in str(report)


def test_a_clean_file_gets_no_notes():
    _, report = load_labelled_file(FILES / "valid_array.json")
    assert report.notes == []


def test_texts_longer_than_the_csv_modules_limit_are_read_whole(tmp_path):
    import csv

    long_text = "word " * 40_000 + "end"  # 200,003 characters, past csv's default field limit of 131,072
    for suffix, separator in ((".csv", ","), (".tsv", "\t")):
        path = tmp_path / f"long{suffix}"
        path.write_text(f"text{separator}label\n{long_text}{separator}positive\nShort{separator}negative\n")
        dataset, _ = load_labelled_file(path)
        assert dataset["text"][0] == long_text
    assert csv.field_size_limit() == 131_072, "the csv module's limit is restored"


def test_a_folder_is_not_reported_as_a_missing_file(tmp_path):
    with pytest.raises(DataValidationError, match=r"is a folder, not a file.*load_sentiment_dataset\(folder\)"):
        load_labelled_file(tmp_path)


def test_files_larger_than_the_limit_are_refused_before_reading():
    with pytest.raises(DataValidationError, match=r"valid.csv is 0 MiB, more than max_file_mb=0.0001.*streaming=True"):
        load_labelled_file(FILES / "valid.csv", max_file_mb=0.0001)


def test_a_file_too_small_to_split_gets_the_counts_and_what_to_do():
    with pytest.raises(DataValidationError) as raised:
        load_sentiment_dataset(str(FILES / "tiny.csv"))
    message = str(raised.value)
    assert message.startswith("tiny.csv has 3 examples (negative=1, positive=2): too few to split by class")
    assert "at least 10 examples" in message and "a folder with train, validation and test files" in message
    assert raised.value.__suppress_context__


def test_splitting_needs_a_class_label_column():
    plain = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})
    with pytest.raises(DataValidationError, match=r"needs a 'label' column of class ids.*class_encode_column"):
        data.stratified_splits(plain)


def test_every_loader_reads_the_same_file_types(tmp_path):
    rows = [{"text": f"review number {i}", "label": "positive" if i % 2 else "negative"} for i in range(40)]
    (tmp_path / "reviews.JSON").write_text(json.dumps(rows))
    assert [len(split) for split in load_sentiment_dataset(str(tmp_path)).values()] == [32, 4, 4]
    with pytest.raises(DataValidationError, match="No such file or folder"):
        load_sentiment_dataset("elsewhere/reviews.JSON")
    assert data.LABELLED_FILE_SUFFIXES == (".csv", ".tsv", ".jsonl", ".json")


def test_two_train_files_in_one_folder_are_refused(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na,positive\nb,negative\n")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "positive"}\n')
    with pytest.raises(DataValidationError, match=r"holds two train files, train.csv and train.jsonl"):
        load_sentiment_dataset(str(tmp_path))


def test_tokenized_splits_have_model_inputs_only_and_loaders_pad_per_batch(splits):
    from utils.loaders import make_eval_loader, make_train_loader, tokenize_for_classification
    from utils.models import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    small = splits["train"].select(range(200))
    assert max(len(ids) for ids in tokenize_for_classification(small, tokenizer, max_length=16)["input_ids"]) == 16
    tokenized = tokenize_for_classification(small, tokenizer, max_length=128)
    assert set(tokenized.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    grouped = make_train_loader(tokenized, tokenizer, batch_size=20, seed=0)
    plain = make_train_loader(tokenized, tokenizer, batch_size=20, seed=0, group_by_length=False)
    padded = {name: sum(b["input_ids"].numel() for b in loader) for name, loader in (("grouped", grouped), ("plain", plain))}
    assert padded["grouped"] < padded["plain"]
    first_epoch = [b["labels"].tolist() for b in make_train_loader(tokenized, tokenizer, 20, seed=0)]
    assert first_epoch == [b["labels"].tolist() for b in make_train_loader(tokenized, tokenizer, 20, seed=0)]
    in_order = torch.cat([b["labels"] for b in make_eval_loader(tokenized, tokenizer)]).tolist()
    assert in_order == tokenized["labels"]


# ---- inputs that used to pass silently


def write_split(folder: Path, split: str, rows: list[tuple[str, str]]) -> Path:
    path = folder / f"{split}.csv"
    path.write_text("text,label\n" + "".join(f'"{text}",{label}\n' for text, label in rows), encoding="utf-8")
    return path


def review_rows(start: int, count: int) -> list[tuple[str, str]]:
    return [(f"review number {i}", "positive" if i % 2 else "negative") for i in range(start, start + count)]


def test_a_test_file_that_repeats_the_training_file_is_refused_with_counts_and_lines(tmp_path):
    write_split(tmp_path, "train", review_rows(0, 20))
    write_split(tmp_path, "validation", review_rows(100, 6))
    test_file = write_split(tmp_path, "test", review_rows(0, 20))
    before = test_file.read_bytes()
    expected = (r"texts are shared between splits .*: 20 text\(s\) of test.csv also in train.csv \(test.csv line 2 = "
                r"train.csv line 2, .* and 15 more\)\. A model would be evaluated on texts it was trained on")  # fmt: skip
    with pytest.raises(DataValidationError, match=expected):
        load_sentiment_dataset(str(tmp_path))
    assert test_file.read_bytes() == before
    with pytest.warns(UserWarning, match=r"20 text\(s\) of test.csv also in train.csv"):
        loaded = load_sentiment_dataset(str(tmp_path), allow_split_overlap=True)
    assert loaded["test"].num_rows == 20


def test_texts_that_differ_only_in_unicode_form_or_spaces_count_as_shared(tmp_path):
    write_split(tmp_path, "train", [("un film trop Cafe\u0301", "negative"), *review_rows(0, 10)])
    write_split(tmp_path, "validation", [("un film  trop Caf\u00e9 ", "negative"), *review_rows(50, 4)])
    with pytest.raises(DataValidationError, match=r"1 text\(s\) of validation.csv also in train.csv \(validation.csv "
                                                  r"line 2 = train.csv line 2\)"):  # fmt: skip
        load_sentiment_dataset(str(tmp_path))


def test_within_one_file_unicode_variants_are_duplicates_and_reported(tmp_path):
    path = write_split(tmp_path, "reviews", [("Cafe\u0301 scene", "positive"), ("Caf\u00e9  scene", "positive"),
                                              ("other", "negative")])  # fmt: skip
    dataset, report = load_labelled_file(path)
    assert dataset["text"] == ["Cafe\u0301 scene", "other"] and report.duplicates_dropped == 1
    assert "duplicates that differ only in Unicode form or spacing dropped on line(s) 3" in str(report)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["pos", "positive", "neg", "negative"], (r"has the labels 'neg' and 'negative' \(first on lines 4 / 5\): the "
                                                 r"first looks like an abbreviation of the second")),
        (["0.25", "0.5", "0.75", "1"], (r"holds fractions such as '0.25' \(first on line 2; 4 different values in all\)"
                                       r": scores or ratings, not classes")),
    ],
)
def test_labels_that_would_silently_become_extra_classes_are_refused(tmp_path, labels, message):
    path = write_split(tmp_path, "reviews", [(f"text {i}", label) for i, label in enumerate(labels)])
    with pytest.raises(DataValidationError, match=message):
        load_labelled_file(path)
    dataset, _ = load_labelled_file(path, label_names=labels)  # declared classes are taken as they are
    assert dataset.features["label"].names == labels


def test_a_nul_character_inside_a_text_is_refused(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"text": "fine", "label": "positive"}\n{"text": "bad\\u0000film", "label": "negative"}\n')
    with pytest.raises(DataValidationError, match=r"holds a zero character \(NUL, \\u0000\) inside the text on line"
                                                  r"\(s\) 2"):  # fmt: skip
        load_labelled_file(path)


def test_messages_about_many_classes_stay_short(tmp_path):
    path = write_split(tmp_path, "reviews", [(f"text {i}", f"class{i}") for i in range(2_000)])
    with pytest.raises(DataValidationError) as too_small:
        load_sentiment_dataset(str(path))
    assert "and 1,990 more" in str(too_small.value) and len(str(too_small.value)) < 1_500
    with pytest.raises(DataValidationError) as unknown:
        load_labelled_file(path, label_names=[f"other{i}" for i in range(2_000)])
    assert "... and 1,990 more]" in str(unknown.value) and len(str(unknown.value)) < 1_500

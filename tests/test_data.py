"""The sentiment splits, the Shakespeare corpus, and validation of learners' own files."""

from pathlib import Path

import numpy as np
import torch
import pytest

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


@pytest.mark.parametrize(
    "filename, expected",
    [
        ("missing.csv", r"File not found: .*missing\.csv"),
        ("empty.csv", r"empty.csv is empty"),
        ("header_only.csv", r"header but no data rows"),
        ("wrong_columns.csv", r"no column\(s\) 'text', 'label'; the columns are \['review', 'sentiment'\].*text_column='review'"),
        ("semicolon.csv", r"the columns are \['text;label'\].*separate its columns with another character"),
        ("empty_text.csv", r"column 'text' is empty on line\(s\) 3"),
        ("unknown_labels.csv", r"unknown label\(s\) \['negativ', 'neutral'\] on line\(s\) 3, 4"),
        ("single_class.csv", r"only one class \('positive'\).*at least two.*label_column='label'"),
        ("label_spellings.csv", r"spells one label in different ways: 'Positive' / 'positive'"),
        ("bad_quotes.csv", r"bad_quotes.csv, line 4: a double quote opened on this line seems never to be closed"),
        ("bad_array.json", r"bad_array.json, item 2 of the array: expected a JSON object, got str"),
        ("latin1.csv", r"line 3 is not valid UTF-8 \(byte 0xe9.*iconv"),
        ("broken.jsonl", r"broken.jsonl, line 3: not valid JSON"),
        ("ragged.csv", r"ragged.csv, line 2: 3 fields but the header has 2"),
        ("notes.xlsx", r"unsupported file type '.xlsx'.*CSV"),
    ],
)
def test_bad_files_get_errors_that_say_what_to_fix(filename, expected):
    labels = ["negative", "positive"] if filename == "unknown_labels.csv" else None
    with pytest.raises(DataValidationError, match=expected):
        load_labelled_file(FILES / filename, label_names=labels)


def test_class_numbers_with_label_names_get_a_specific_hint():
    with pytest.raises(DataValidationError, match=r"seems to store class numbers.*label_names=None"):
        load_labelled_file(FILES / "valid.jsonl", label_names=["negative", "positive"])


def test_other_column_names_are_used_when_given():
    dataset, _ = load_labelled_file(FILES / "wrong_columns.csv", text_column="review", label_column="sentiment")
    assert dataset.column_names == ["text", "label"] and dataset["text"] == ["Great", "Awful"]


def test_every_error_names_the_file():
    for path in sorted(FILES.iterdir()):
        if path.name.startswith("valid"):
            continue
        with pytest.raises(DataValidationError) as raised:
            load_labelled_file(path, label_names=["negative", "positive"])
        assert path.name in str(raised.value), f"{path.name}: the message must name the file"


def test_tokenized_splits_have_model_inputs_only_and_loaders_pad_per_batch(splits):
    from utils.data import make_eval_loader, make_train_loader, tokenize_for_classification
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

"""The course's data: labelled movie-review sentences, Shakespeare's plays, and your own files.

The sentiment data set is the 10,605 Rotten Tomatoes sentences that Hutto & Gilbert
(ICWSM 2014) had rated by at least 20 people each on a scale from -4 (extremely
negative) to +4 (extremely positive). We turn the mean rating into a binary label:

- ``positive`` (1) if the mean rating is at least ``NEUTRAL_MARGIN`` (0.5),
- ``negative`` (0) if it is at most ``-NEUTRAL_MARGIN``,
- sentences in between are near-neutral: raters did not agree on a direction, so
  they are left out of the labelled splits (533 sentences with the default margin;
  ``read_movie_reviews`` still returns them, for analysis).

Two sentences appear twice in the file; one copy of each is kept. The labelled sentences are split 80/10/10 into train, validation and test,
stratified by label, from a fixed seed. data/README.md is the datasheet.
"""

from __future__ import annotations

import configparser
import math
import re
import warnings
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from utils.assets import fetch
from utils.environment import hub_offline
from utils.labelled_files import (
    LABELLED_FILE_SUFFIXES,
    DataReport,
    DataValidationError,
    load_labelled_file,
    suffix_list,
    text_key,
)
from utils.messages import listing, short_list

SENTIMENT_LABELS = ("negative", "positive")
NEUTRAL_MARGIN = 0.5
SPLIT_SEED = 42
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.1
DEFAULT_SENTIMENT_SOURCE = "movie-reviews"

# Four held-out plays, one of each kind: a tragedy, a Roman play, a comedy, a romance.
VALIDATION_PLAYS = ("macbeth", "julius_caesar", "much_ado_about_nothing", "winters_tale")
# Poems in the package; the corpus is the plays.
SHAKESPEARE_POEMS = (
    "sonnets",
    "rape_of_lucrece",
    "lovers_complaint",
    "passionate_pilgrim",
    "phoenix_and_the_turtle",
)


# ------------------------------------------------------------------ movie reviews


def read_rated_snippets(path: str | Path) -> pd.DataFrame:
    """Read one of Hutto & Gilbert's rated-snippet files (tab-separated id, mean rating, text) as a
    DataFrame with columns id (as written in the file), rating, text."""
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise DataValidationError(
                    f"{path.name}, line {line_number}: expected 3 tab-separated fields "
                    f"(id, rating, text), found {len(parts)}. Delete the cached folder "
                    f"{path.parent.name}/ to fetch a fresh copy."
                )
            rows.append({"id": parts[0], "rating": float(parts[1]), "text": parts[2].strip()})
    return pd.DataFrame(rows)


def read_movie_reviews(folder: str | Path | None = None) -> pd.DataFrame:
    """Read all 10,605 rated sentences as a DataFrame with columns id, rating, text.

    ``folder`` defaults to the packaged asset (fetched on first use).
    """
    folder = Path(folder) if folder is not None else fetch("movie-reviews")
    table = read_rated_snippets(folder / "movieReviewSnippets_GroundTruth.txt")
    return table.assign(id=table["id"].astype(int))


def load_product_reviews(folder: str | Path | None = None, neutral_margin: float = NEUTRAL_MARGIN) -> datasets.Dataset:
    """Amazon product-review snippets rated by the same procedure (Hutto & Gilbert 2014), labelled by the
    movie reviews' rule: a test set from another domain. Near-neutral and repeated snippets are left out.

    ``folder`` defaults to the packaged asset. Columns: id (a string such as ``"1_2"``), text, label, rating.
    """
    folder = Path(folder) if folder is not None else fetch("movie-reviews")
    table = read_rated_snippets(folder / "amazonReviewSnippets_GroundTruth.txt").drop_duplicates(subset="text")
    labels = table["rating"].map(lambda r: label_from_rating(r, neutral_margin))
    labelled = table[labels.notna()].assign(label=labels[labels.notna()].astype(int))
    features = sentiment_features()
    features["id"] = datasets.Value("string")
    return datasets.Dataset.from_pandas(labelled[["id", "text", "label", "rating"]], features=features, preserve_index=False)


def label_from_rating(rating: float, margin: float = NEUTRAL_MARGIN) -> int | None:
    """Map a mean rating to 1 (positive), 0 (negative) or None (near-neutral, left out)."""
    if rating >= margin:
        return 1
    if rating <= -margin:
        return 0
    return None


def sentiment_features() -> datasets.Features:
    """The columns of the labelled sentiment splits."""
    return datasets.Features(
        {
            "id": datasets.Value("int32"),
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(SENTIMENT_LABELS)),
            "rating": datasets.Value("float32"),
        }
    )


def stratified_splits(
    dataset: datasets.Dataset,
    seed: int = SPLIT_SEED,
    validation_fraction: float = VALIDATION_FRACTION,
    test_fraction: float = TEST_FRACTION,
    source: str = "The data set",
) -> datasets.DatasetDict:
    """Split a data set with a ClassLabel ``label`` column into train/validation/test,
    keeping the class balance in each split. The same seed gives the same splits.

    Data too small to split by class raises ``DataValidationError``; its message starts
    with ``source`` (e.g. the file name) and gives the class counts.
    """
    if not isinstance(dataset.features.get("label"), datasets.ClassLabel):
        raise DataValidationError(
            f"{source}: splitting by class needs a 'label' column of class ids (a ClassLabel); it has "
            f"{dataset.features.get('label')}. Convert it with dataset.class_encode_column('label')."
        )
    held_out = validation_fraction + test_fraction
    try:
        first = dataset.train_test_split(test_size=held_out, stratify_by_column="label", seed=seed)
        second = first["test"].train_test_split(
            test_size=test_fraction / held_out, stratify_by_column="label", seed=seed
        )
    except ValueError as error:
        raise _too_small_to_split(dataset, source, validation_fraction, test_fraction, error) from None
    return datasets.DatasetDict({"train": first["train"], "validation": second["train"], "test": second["test"]})


def _too_small_to_split(
    dataset: datasets.Dataset, source: str, validation_fraction: float, test_fraction: float, error: ValueError
) -> DataValidationError:
    names = dataset.features["label"].names
    counts = np.bincount(dataset["label"], minlength=len(names))
    per_class = math.ceil(round(1 / min(validation_fraction, test_fraction), 6))
    shares = f"{1 - validation_fraction - test_fraction:.0%}/{validation_fraction:.0%}/{test_fraction:.0%}"
    return DataValidationError(
        f"{source} has {len(dataset)} examples ({listing(f'{n}={c}' for n, c in zip(names, counts))}): too few "
        f"to split by class into train, validation and test ({shares}; {error}). Give each class at least "
        f"{per_class} examples, so that every split gets some of it (far more for a trustworthy accuracy), or "
        "bring your own splits: a folder with train, validation and test files."
    )


def load_sentiment_dataset(
    source: str = DEFAULT_SENTIMENT_SOURCE,
    seed: int = SPLIT_SEED,
    neutral_margin: float = NEUTRAL_MARGIN,
    *,
    allow_split_overlap: bool = False,
) -> datasets.DatasetDict:
    """Return train/validation/test splits for binary sentiment classification.

    ``source`` is ``"movie-reviews"`` (the packaged default), a local CSV/JSONL file
    with ``text`` and ``label`` columns, a local folder of such files, or a Hugging
    Face Hub data set name such as ``"rotten_tomatoes"`` (online only). Splits the
    source lacks are made with ``stratified_splits``. A folder whose files share texts
    (compared by ``text_key``, so Unicode forms and spacing do not hide them) is refused with
    the counts and lines, unless ``allow_split_overlap=True`` (then it is a warning).
    """
    if source == DEFAULT_SENTIMENT_SOURCE:
        table = read_movie_reviews()
        # Two sentences occur twice with different ids; keep one copy so that no test
        # sentence can also be a training sentence.
        table = table.drop_duplicates(subset="text", keep="first")
        labels = table["rating"].map(lambda r: label_from_rating(r, neutral_margin))
        labelled = table[labels.notna()].assign(label=labels[labels.notna()].astype(int))
        dataset = datasets.Dataset.from_pandas(
            labelled[["id", "text", "label", "rating"]], features=sentiment_features(), preserve_index=False
        )
        return stratified_splits(dataset, seed=seed)
    path = Path(source).expanduser()
    if path.is_file():
        dataset, _ = load_labelled_file(path)
        return stratified_splits(dataset, seed=seed, source=path.name)
    if path.is_dir():
        return _load_folder(path, seed, allow_split_overlap)
    if source.startswith((".", "/", "~")) or path.suffix.lower() in LABELLED_FILE_SUFFIXES:
        raise DataValidationError(f"No such file or folder: {source}. Check the path.")
    return _load_hub_dataset(source, seed)


def _load_folder(folder: Path, seed: int, allow_split_overlap: bool = False) -> datasets.DatasetDict:
    """A folder with train/validation/test files, or with one file to split."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in LABELLED_FILE_SUFFIXES)
    if not files:
        raise DataValidationError(f"{folder} holds no {suffix_list()} file.")
    by_split: dict[str, Path] = {}
    for path in files:
        if path.stem in ("train", "validation", "test"):
            if path.stem in by_split:
                raise DataValidationError(
                    f"{folder} holds two {path.stem} files, {by_split[path.stem].name} and {path.name}: keep one."
                )
            by_split[path.stem] = path
    if "train" not in by_split:
        if len(files) > 1:
            raise DataValidationError(
                f"{folder} holds several files but none is named train (train.csv, train.jsonl, ...): "
                "name them train, validation and test, or keep a single file to be split."
            )
        return stratified_splits(load_labelled_file(files[0])[0], seed=seed, source=f"{folder.name}/{files[0].name}")
    splits = _load_given_splits(folder, by_split, allow_split_overlap)
    train = splits["train"]
    if len(splits) < 3:  # carve the missing held-out splits from train
        carved = stratified_splits(train, seed=seed, source=f"{folder.name}/{by_split['train'].name}")
        splits = {"train": carved["train"], **{s: splits.get(s, carved[s]) for s in ("validation", "test")}}
    return datasets.DatasetDict(splits)


def _load_given_splits(folder: Path, by_split: dict[str, Path], allow_split_overlap: bool) -> dict:
    """The splits a folder's files give (train, and validation and test if there), checked for shared texts."""
    train, report = load_labelled_file(by_split["train"])
    splits, seen = {"train": train}, {"train": (by_split["train"].name, train["text"], report)}
    for split in ("validation", "test"):
        if split in by_split:
            splits[split], report = load_labelled_file(by_split[split], label_names=train.features["label"].names)
            seen[split] = (by_split[split].name, splits[split]["text"], report)
    overlaps = _split_overlaps(list(seen.values()))
    if overlaps:
        message = (
            f"{folder}: texts are shared between splits (compared after Unicode NFKC normalisation and with runs "
            f"of spaces as one): {'; '.join(overlaps)}. A model would be evaluated on texts it was trained on, "
            "and its accuracy would look better than it is. Delete them from one of the files, or pass "
            "allow_split_overlap=True to keep them knowingly."
        )
        if not allow_split_overlap:
            raise DataValidationError(message)
        warnings.warn(message, stacklevel=4)
    return splits


def _split_overlaps(splits: list[tuple[str, list[str], DataReport]]) -> list[str]:
    """For each pair of files (name, texts, report) that share texts: how many, and where (a few pairs of lines)."""
    found = []
    for number, (first, first_texts, first_report) in enumerate(splits):
        where = {}
        for text, line in zip(first_texts, first_report.lines):
            where.setdefault(text_key(text), line)
        for second, texts, report in splits[number + 1 :]:
            shared = [(line, where[key]) for text, line in zip(texts, report.lines) if (key := text_key(text)) in where]
            if shared:
                places = listing((f"{second} {report.line_unit} {line} = {first} {first_report.line_unit} {earlier}"
                                  for line, earlier in shared), limit=5)  # fmt: skip
                found.append(f"{len(shared):,} text(s) of {second} also in {first} ({places})")
    return found


def _load_hub_dataset(name: str, seed: int) -> datasets.DatasetDict:
    """A data set from the Hugging Face Hub, with a clear message when offline."""
    if hub_offline():
        raise DataValidationError(
            f"'{name}' is not a local file or folder, and the Hugging Face Hub is offline "
            "(HF_HUB_OFFLINE=1). Use the packaged default with "
            f"load_sentiment_dataset('{DEFAULT_SENTIMENT_SOURCE}'), pass a CSV/JSONL file, or go "
            "online and unset HF_HUB_OFFLINE."
        )
    try:
        loaded = datasets.load_dataset(name)
    except Exception as error:  # network errors come in many types
        raise DataValidationError(
            f"Could not load '{name}' from the Hugging Face Hub ({type(error).__name__}: {error}). "
            f"Check the name and your connection, or use load_sentiment_dataset('{DEFAULT_SENTIMENT_SOURCE}')."
        ) from error
    for split in loaded.values():
        missing = {"text", "label"} - set(split.column_names)
        if missing:
            raise DataValidationError(
                f"Hub data set '{name}' lacks the column(s) {sorted(missing)}; it has "
                f"{short_list(split.column_names)}. Rename them with dataset.rename_column(old, new)."
            )
    if "train" in loaded and "validation" in loaded and "test" in loaded:
        return datasets.DatasetDict({s: loaded[s] for s in ("train", "validation", "test")})
    return stratified_splits(loaded["train"], seed=seed)


# --------------------------------------------------------------------- Shakespeare


def _play_titles(folder: Path) -> dict[str, str]:
    """Titles of the works from the package's metadata file, keyed by file stem."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(folder / "metadata.txt", encoding="utf-8")
    return {section: parser[section].get("title", section) for section in parser.sections()}


def clean_play_text(text: str) -> str:
    """Normalise line endings and collapse runs of blank lines to a single blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def load_shakespeare(
    validation_plays: tuple[str, ...] = VALIDATION_PLAYS, folder: str | Path | None = None
) -> datasets.DatasetDict:
    """Shakespeare's 37 plays, one row per play (columns play, title, text), split by play.

    Whole plays are held out so that validation perplexity measures how well a model
    writes Shakespeare it has not seen, not lines it has memorised. The poems
    (sonnets and others) are left out: the corpus is drama.
    """
    folder = Path(folder) if folder is not None else fetch("shakespeare")
    titles = _play_titles(folder)
    rows = []
    for path in sorted(folder.glob("*_gut.txt")):
        play = path.name.removesuffix("_gut.txt")
        if play in SHAKESPEARE_POEMS:
            continue
        text = clean_play_text(path.read_text(encoding="utf-8"))
        rows.append({"play": play, "title": titles.get(path.stem, play), "text": text})
    known = {row["play"] for row in rows}
    unknown = sorted(set(validation_plays) - known)
    if unknown:
        raise DataValidationError(f"Unknown play(s) {unknown}; choose from: {', '.join(sorted(known))}.")
    table = pd.DataFrame(rows)
    is_validation = table["play"].isin(validation_plays)
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_pandas(table[~is_validation], preserve_index=False),
            "validation": datasets.Dataset.from_pandas(table[is_validation], preserve_index=False),
        }
    )

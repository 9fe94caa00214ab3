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
import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import torch

from utils.assets import fetch
from utils.environment import hub_offline

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


class DataValidationError(ValueError):
    """A data file or data set cannot be used as it is. The message says what to fix."""


# ------------------------------------------------------------------ movie reviews


def read_movie_reviews(folder: str | Path | None = None) -> pd.DataFrame:
    """Read all 10,605 rated sentences as a DataFrame with columns id, rating, text.

    ``folder`` defaults to the packaged asset (fetched on first use).
    """
    folder = Path(folder) if folder is not None else fetch("movie-reviews")
    path = folder / "movieReviewSnippets_GroundTruth.txt"
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
                    f"{folder.name}/ to fetch a fresh copy."
                )
            rows.append({"id": int(parts[0]), "rating": float(parts[1]), "text": parts[2].strip()})
    return pd.DataFrame(rows)


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
) -> datasets.DatasetDict:
    """Split a data set with a ClassLabel ``label`` column into train/validation/test,
    keeping the class balance in each split. The same seed gives the same splits."""
    held_out = validation_fraction + test_fraction
    first = dataset.train_test_split(test_size=held_out, stratify_by_column="label", seed=seed)
    second = first["test"].train_test_split(
        test_size=test_fraction / held_out, stratify_by_column="label", seed=seed
    )
    return datasets.DatasetDict(
        {"train": first["train"], "validation": second["train"], "test": second["test"]}
    )


def load_sentiment_dataset(
    source: str = DEFAULT_SENTIMENT_SOURCE,
    seed: int = SPLIT_SEED,
    neutral_margin: float = NEUTRAL_MARGIN,
) -> datasets.DatasetDict:
    """Return train/validation/test splits for binary sentiment classification.

    ``source`` is ``"movie-reviews"`` (the packaged default), a local CSV/JSONL file
    with ``text`` and ``label`` columns, a local folder of such files, or a Hugging
    Face Hub data set name such as ``"rotten_tomatoes"`` (online only). Splits the
    source lacks are made with ``stratified_splits``.
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
        return stratified_splits(dataset, seed=seed)
    if path.is_dir():
        return _load_folder(path, seed)
    if source.startswith((".", "/", "~")) or path.suffix in {".csv", ".jsonl", ".json", ".tsv"}:
        raise DataValidationError(f"No such file or folder: {source}. Check the path.")
    return _load_hub_dataset(source, seed)


def _load_folder(folder: Path, seed: int) -> datasets.DatasetDict:
    """A folder with train/validation/test files, or with one file to split."""
    files = sorted(p for p in folder.iterdir() if p.suffix in {".csv", ".jsonl", ".tsv"})
    if not files:
        raise DataValidationError(f"{folder} holds no .csv, .tsv or .jsonl file.")
    by_split = {p.stem: p for p in files if p.stem in {"train", "validation", "test"}}
    if "train" not in by_split:
        if len(files) > 1:
            raise DataValidationError(
                f"{folder} holds several files but none is named train.csv/train.jsonl: "
                "name them train, validation and test, or keep a single file to be split."
            )
        return stratified_splits(load_labelled_file(files[0])[0], seed=seed)
    train, _ = load_labelled_file(by_split["train"])
    names = train.features["label"].names
    splits = {"train": train}
    for split in ("validation", "test"):
        if split in by_split:
            splits[split], _ = load_labelled_file(by_split[split], label_names=names)
    if len(splits) < 3:  # carve the missing held-out splits from train
        carved = stratified_splits(train, seed=seed)
        splits = {"train": carved["train"], **{s: splits.get(s, carved[s]) for s in ("validation", "test")}}
    return datasets.DatasetDict(splits)


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
                f"{split.column_names}. Rename them with dataset.rename_column(old, new)."
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


# ------------------------------------------------------------------ your own data


@dataclass
class DataReport:
    """What ``load_labelled_file`` found and did, to print next to the data set."""

    path: str
    rows_read: int
    rows_kept: int
    label_counts: dict[str, int]
    duplicates_dropped: int = 0
    conflicting_duplicates: int = 0
    too_long: int = 0
    max_length: int | None = None
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {self.rows_read} rows read, {self.rows_kept} kept",
            "  labels: " + ", ".join(f"{name}={count}" for name, count in self.label_counts.items()),
            f"  exact duplicates (same text and label) dropped: {self.duplicates_dropped}",
            f"  texts that appear with different labels: {self.conflicting_duplicates}",
        ]
        if self.max_length is not None:
            lines.append(f"  texts longer than {self.max_length} tokens (will be truncated): {self.too_long}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _decode_utf8(raw: bytes, path: Path) -> str:
    """Decode bytes as UTF-8 (a byte-order mark is allowed) or say where and how to fix it."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataValidationError(
            f"{path.name}: line {line} is not valid UTF-8 (byte 0x{raw[error.start]:02x} at offset "
            f"{error.start}). Save the file as UTF-8 (spreadsheet programs: 'CSV UTF-8'), or convert "
            f"it, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed_{path.name}`."
        ) from None


def _read_table(path: Path) -> pd.DataFrame:
    """Read a CSV, TSV or JSONL file into strings, with line numbers in every error."""
    if not path.is_file():
        raise DataValidationError(f"File not found: {path}. Check the path and the working folder.")
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".tsv", ".jsonl", ".json"}:
        raise DataValidationError(
            f"{path.name}: unsupported file type '{suffix}'. Save your data as CSV (with a header "
            "row) or JSON Lines (one JSON object per line)."
        )
    text = _decode_utf8(path.read_bytes(), path)
    if not text.strip():
        raise DataValidationError(f"{path.name} is empty. Add a header row and one row per example.")
    if suffix == ".json" and text.lstrip().startswith("["):
        return _read_json_array(text, path)
    if suffix in {".jsonl", ".json"}:
        records = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataValidationError(
                    f"{path.name}, line {line_number}: not valid JSON ({error.msg}). Each line must "
                    'be one object such as {"text": "...", "label": "positive"}.'
                ) from None
            if not isinstance(record, dict):
                raise DataValidationError(
                    f"{path.name}, line {line_number}: expected a JSON object, got {type(record).__name__}. "
                    'Write one object per line, such as {"text": "...", "label": "positive"}.'
                )
            record["_line"] = line_number
            records.append(record)
        return pd.DataFrame(records)
    delimiter = "\t" if suffix == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        rows, row_start = [], reader.line_num + 1
        for row in reader:
            if not any(cell.strip() for cell in row):
                row_start = reader.line_num + 1
                continue
            if len(row) != len(header):
                if any("\n" in cell for cell in row):
                    raise DataValidationError(
                        f"{path.name}, line {row_start}: a double quote opened on this line seems never to be closed, "
                        "so the lines after it were read into one field. Close the quote, or double the quotes "
                        'inside a quoted text ("She said ""wow"".").'
                    )
                raise DataValidationError(
                    f"{path.name}, line {reader.line_num}: {len(row)} fields but the header has "
                    f"{len(header)}. Quote texts that contain '{delimiter}' with double quotes."
                )
            rows.append([*row, row_start])
            row_start = reader.line_num + 1
    except csv.Error as error:
        raise DataValidationError(
            f"{path.name}, line {reader.line_num}: {error}. Check the quotes on that line: a text that "
            'contains quotes must be quoted itself, with inner quotes doubled ("She said ""wow"".").'
        ) from None
    if not rows:
        raise DataValidationError(f"{path.name} has a header but no data rows. Add one row per example below the header.")
    return pd.DataFrame(rows, columns=[*[h.strip() for h in header], "_line"])


def _read_json_array(text: str, path: Path) -> pd.DataFrame:
    """Read a ``.json`` file that holds one array of objects; rows are numbered from 1."""
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataValidationError(
            f"{path.name}, line {error.lineno}: not valid JSON ({error.msg}). The file must be one array "
            'of objects such as [{"text": "...", "label": "positive"}, ...], or JSON Lines (.jsonl).'
        ) from None
    if not records:
        raise DataValidationError(f"{path.name} holds an empty array. Add one object per example.")
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DataValidationError(
                f"{path.name}, item {number} of the array: expected a JSON object, got "
                f'{type(record).__name__}. Write each example as {{"text": "...", "label": "positive"}}.'
            )
    # There are no line numbers to point to, so messages count the objects instead.
    return pd.DataFrame([{**record, "_line": number} for number, record in enumerate(records, start=1)])


def _line_list(lines: pd.Series, limit: int = 5) -> str:
    shown = ", ".join(str(int(n)) for n in lines.head(limit))
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def load_labelled_file(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    label_names: list[str] | None = None,
    tokenizer=None,
    max_length: int | None = None,
    drop_duplicates: bool = True,
) -> tuple[datasets.Dataset, DataReport]:
    """Load and validate a CSV/TSV/JSONL (or JSON array) file of texts and labels for classification.

    Raises ``DataValidationError`` naming the file, the column and the lines, and saying
    what to do, when: the file is missing, empty, not UTF-8 or malformed; a column is
    missing; a text or label is empty; a label is spelled in two ways ("Positive" and
    "positive"); labels are outside ``label_names``; or there is only one class.
    Exact duplicates (same text and label) are dropped when ``drop_duplicates`` and
    counted in the report, as are texts that appear with different labels and (with a
    ``tokenizer`` and ``max_length``) texts that will be truncated; the report's notes
    give their line numbers. Nothing is dropped silently: print the returned ``DataReport``.

    Returns a data set with columns ``text`` and ``label`` (a ClassLabel) and the report.
    """
    path = Path(path).expanduser()
    table = _read_table(path)
    missing = [c for c in (text_column, label_column) if c not in table.columns]
    if missing:
        available = [c for c in table.columns if c != "_line"]
        if len(available) == 1 and any(sep in available[0] for sep in ";\t|"):
            advice = (
                f"The header {available[0]!r} was read as one column: the file seems to separate its columns "
                "with another character than ','. Save it as CSV with commas (or as .tsv if it uses tabs)."
            )
        else:
            advice = (
                f"Pass the right names, e.g. load_labelled_file(path, text_column={available[0]!r}, "
                f"label_column={available[-1]!r})."
            )
        raise DataValidationError(
            f"{path.name}: no column(s) {', '.join(repr(c) for c in missing)}; the columns are {available}. {advice}"
        )
    texts = table[text_column].astype("string").str.strip()
    labels = table[label_column].astype("string").str.strip()
    empty_text = texts.isna() | (texts == "")
    if empty_text.any():
        raise DataValidationError(
            f"{path.name}: column '{text_column}' is empty on line(s) {_line_list(table['_line'][empty_text])}. "
            "Fill in or delete those rows."
        )
    empty_label = labels.isna() | (labels == "")
    if empty_label.any():
        raise DataValidationError(
            f"{path.name}: column '{label_column}' is empty on line(s) {_line_list(table['_line'][empty_label])}. "
            "Every example needs a label."
        )
    found = sorted(labels.unique(), key=_label_sort_key)
    by_spelling: dict[str, list[str]] = {}
    for label in found:
        by_spelling.setdefault(" ".join(label.casefold().split()), []).append(label)
    clashes = [variants for variants in by_spelling.values() if len(variants) > 1]
    if clashes:
        raise DataValidationError(
            f"{path.name}: column '{label_column}' spells one label in different ways: "
            f"{' / '.join(repr(v) for v in clashes[0])}. They would become separate classes; write each "
            "label the same way everywhere (same capitals and spaces)."
        )
    if label_names is None:
        label_names = found
    else:
        label_names = [str(name) for name in label_names]
        unknown = labels[~labels.isin(label_names)]
        if len(unknown):
            hint = "Fix the typos, or pass label_names with every label you use."
            if all(label.isdigit() and int(label) < len(label_names) for label in unknown.unique()):
                hint = (
                    f"The file seems to store class numbers: write the names {label_names} in the file, or "
                    "pass label_names=None to use the numbers as they are."
                )
            raise DataValidationError(
                f"{path.name}: column '{label_column}' has unknown label(s) {sorted(unknown.unique())[:10]} "
                f"on line(s) {_line_list(table['_line'][unknown.index])}; expected one of {label_names}. {hint}"
            )
    if labels.nunique() < 2:
        raise DataValidationError(
            f"{path.name}: column '{label_column}' has only one class ({found[0]!r}). A classifier "
            "needs examples of at least two classes: add examples of the other class(es), or check that "
            f"label_column={label_column!r} is really the label column."
        )
    frame = pd.DataFrame({"text": texts.astype(str), "label": labels.astype(str), "line": table["_line"]})
    exact = frame.duplicated(subset=["text", "label"], keep="first")
    conflicting = frame[~exact].duplicated(subset="text", keep=False)
    report = DataReport(
        path=path.name,
        rows_read=len(frame),
        rows_kept=int(len(frame) - (exact.sum() if drop_duplicates else 0)),
        label_counts={},
        duplicates_dropped=int(exact.sum()) if drop_duplicates else 0,
        conflicting_duplicates=int(frame[~exact][conflicting]["text"].nunique()),
    )
    if exact.any():
        action = "dropped" if drop_duplicates else "kept (drop_duplicates=False)"
        report.notes.append(f"exact duplicates {action} on line(s) {_line_list(frame['line'][exact])}")
    if report.conflicting_duplicates:
        report.notes.append(
            f"texts with different labels on line(s) {_line_list(frame[~exact][conflicting]['line'])} are kept; "
            "check them, they are label noise"
        )
    multi_line = frame["text"].str.contains("\n", regex=False)
    if multi_line.any():
        report.notes.append(
            f"texts spanning several lines start on line(s) {_line_list(frame['line'][multi_line])}; if that "
            "is not intended, look for a double quote that is not closed"
        )
    if drop_duplicates:
        frame = frame[~exact]
    report.label_counts = {name: int((frame["label"] == name).sum()) for name in label_names}
    absent = [name for name, count in report.label_counts.items() if count == 0]
    if absent:
        report.notes.append(f"no examples of {absent}: a model cannot learn a class it never sees")
    if tokenizer is not None and max_length is not None:
        lengths = [len(ids) for ids in tokenizer(list(frame["text"]))["input_ids"]]
        report.max_length = max_length
        too_long = [length > max_length for length in lengths]
        report.too_long = int(sum(too_long))
        if report.too_long:
            report.notes.append(
                f"over-long texts on line(s) {_line_list(frame['line'][np.array(too_long)])}; the longest has "
                f"{max(lengths)} tokens (raise max_length, or accept that their ends are cut off)"
            )
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=label_names)})
    dataset = datasets.Dataset.from_dict(
        {"text": list(frame["text"]), "label": [label_names.index(x) for x in frame["label"]]}, features=features
    )
    return dataset, report


def _label_sort_key(label: str) -> tuple[int, float | str]:
    """Sort numeric labels numerically ("2" before "10") and the rest alphabetically."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


# -------------------------------------------------------- tokenizing and batching


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


def shuffled_loader(dataset, batch_size: int, collate_fn, seed: int, group_by_length: bool) -> torch.utils.data.DataLoader:
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

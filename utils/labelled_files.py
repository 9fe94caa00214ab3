"""Your own labelled data: a CSV, TSV, JSON Lines or JSON file of texts and labels, checked strictly.

``load_labelled_file`` reads only the text and label columns, row by row, and refuses with a clear
message (which file, which line, which column, what to do) whatever would otherwise be trained on
silently: broken encodings and quoting, missing cells, labels spelled two ways, fractional or
abbreviated labels, classes that do not match the model. What it changes (whitespace, Unicode form,
duplicates) it reports in a ``DataReport``.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import csv
import decimal
import io
import json
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from utils.messages import listing, short_list


class DataValidationError(ValueError):
    """A data file or data set cannot be used as it is. The message says what to fix."""


LABELLED_FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
# The default limit of load_labelled_file(max_file_mb=...). Its peak memory is about nine times
# the file's size (the texts as Python strings, then as Arrow data in the Dataset).
MAX_FILE_MB = 256.0
# What spreadsheets and pandas write for a missing value; as a label it is almost never a class.
MISSING_VALUE_MARKERS = frozenset({"n/a", "#n/a", "na", "#na", "nan", "-nan", "null", "none", "<na>"})
JSON_EXAMPLE = '{"text": "...", "label": "positive"}'


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
    lines: list[int] = field(default_factory=list, repr=False)  # where each kept row starts in the file
    line_unit: str = field(default="line", repr=False)  # "item" for a JSON array

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {self.rows_read} rows read, {self.rows_kept} kept",
            "  labels: " + listing((f"{name}={count}" for name, count in self.label_counts.items()), limit=50),
            f"  exact duplicates (same text and label) dropped: {self.duplicates_dropped}",
            f"  texts that appear with different labels: {self.conflicting_duplicates}",
        ]
        if self.max_length is not None:
            lines.append(f"  texts longer than {self.max_length} tokens (will be truncated): {self.too_long}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class _Cells:
    """The text and label cells of a file as read, with the line (or array item) each row starts on."""

    texts: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    unit: str = "line"  # "item" for a JSON array, whose objects have no line numbers
    notes: list[str] = field(default_factory=list)
    _labels: dict[str, str] = field(default_factory=dict, repr=False)

    def add(self, text: object, label: object, line: int) -> None:
        self.texts.append(text)
        # Rows share one string per distinct label: a large file has few labels but many rows.
        self.labels.append(self._labels.setdefault(label, label) if type(label) is str else label)
        self.lines.append(line)

    def where(self, rows: list[int]) -> str:
        """Where rows (indices) are, for a message: "line(s) 3, 4" or "item(s) 3, 4 of the array"."""
        numbers = _number_list([self.lines[row] for row in rows])
        return f"line(s) {numbers}" if self.unit == "line" else f"item(s) {numbers} of the array"


class _JsonNumber(str):
    """A number in a JSON file, kept as written: labels 1 and 1.0 stay apart, so a mix is reported."""


class _DuplicateKeyError(Exception):
    """A JSON object names the same key twice."""


def _number_list(numbers: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(number) for number in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def suffix_list() -> str:
    """The file types ``load_labelled_file`` reads, for messages: ".csv, .tsv, .jsonl or .json"."""
    return ", ".join(LABELLED_FILE_SUFFIXES[:-1]) + " or " + LABELLED_FILE_SUFFIXES[-1]


def load_labelled_file(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    label_names: list[str] | None = None,
    tokenizer=None,
    max_length: int | None = None,
    drop_duplicates: bool = True,
    max_file_mb: float = MAX_FILE_MB,
) -> tuple[datasets.Dataset, DataReport]:
    """Load and validate a CSV/TSV/JSONL (or JSON array) file of texts and labels for classification.

    Raises ``DataValidationError`` naming the file, the column and the lines, and saying
    what to do, whenever the file cannot be used exactly as it is: it is missing, empty,
    larger than ``max_file_mb``, not UTF-8 or malformed; a column is missing or named twice;
    a text or label is empty, or a label looks like a missing value ("N/A"); one label is
    written in two ways ("Positive" and "positive", "1" and "1.0", or two Unicode spellings
    that look the same); labels are outside ``label_names``; or there is only one class.

    Nothing is dropped or changed silently. Duplicates (same label and ``text_key``: Unicode
    form and spacing aside) are dropped when ``drop_duplicates``; spaces around texts and labels are removed; both are
    reported, as are texts that appear with different labels and (with a ``tokenizer`` and
    ``max_length``) texts that will be truncated. A ``.tsv`` file is read literally, as TSV
    is defined (no CSV quoting: quotes are part of the text). Print the returned ``DataReport``.

    Returns a data set with columns ``text`` and ``label`` (a ClassLabel) and the report.
    """
    path = Path(path).expanduser()
    cells = _read_cells(path, text_column, label_column, max_file_mb)
    texts = _clean_texts(cells, path.name, text_column)
    labels = _clean_labels(cells, path.name, label_column, label_names)
    names = _check_labels(cells, labels, path.name, label_column, label_names)
    report = DataReport(path=path.name, rows_read=len(texts), rows_kept=len(texts), label_counts={}, notes=cells.notes)
    keep = _note_duplicates(cells, texts, labels, report, drop_duplicates)
    _note_multi_line(cells, texts, report)
    texts, labels = [texts[row] for row in keep], [labels[row] for row in keep]
    _note_label_counts(labels, names, report)
    report.lines, report.line_unit = [cells.lines[row] for row in keep], cells.unit
    if tokenizer is not None and max_length is not None:
        _note_truncation(cells, texts, keep, tokenizer, max_length, report)
    return _labelled_dataset(texts, labels, names), report


def _labelled_dataset(texts: list[str], labels: list[str], names: list[str]) -> datasets.Dataset:
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    index = {name: number for number, name in enumerate(names)}
    return datasets.Dataset.from_dict({"text": texts, "label": [index[label] for label in labels]}, features=features)


# ---- reading the file: only the two columns are kept, row by row


def _read_cells(path: Path, text_column: str, label_column: str, max_file_mb: float) -> _Cells:
    """Read the text and label cells of a file, or raise a DataValidationError that says what to fix."""
    _check_path(path, max_file_mb)
    _refuse_other_formats(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            cells = _read_json_document(path, text_column, label_column)
        else:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                if suffix == ".jsonl":
                    cells = _read_json_lines(handle, path.name, text_column, label_column)
                else:
                    cells = _read_delimited(handle, path, "\t" if suffix == ".tsv" else ",", text_column, label_column)
    except UnicodeDecodeError:
        raise _encoding_error(path) from None
    if not cells.lines:
        raise DataValidationError(
            f"{path.name} has a header but no data rows. Add one row per example below the header."
        )
    return cells


def _check_path(path: Path, max_file_mb: float) -> None:
    if path.is_dir():
        raise DataValidationError(
            f"{path} is a folder, not a file. Pass one file inside it, or pass the folder to "
            "load_sentiment_dataset(folder), which reads its train, validation and test files."
        )
    if not path.is_file():
        raise DataValidationError(f"File not found: {path}. Check the path and the working folder.")
    suffix = path.suffix.lower()
    if suffix not in LABELLED_FILE_SUFFIXES:
        raise DataValidationError(
            f"{path.name}: unsupported file type '{suffix}'. Save your data as CSV (with a header "
            f"row) or JSON Lines (one JSON object per line); the file types read are {suffix_list()}."
        )
    size_mb = path.stat().st_size / 2**20
    if size_mb > max_file_mb:
        raise DataValidationError(
            f"{path.name} is {size_mb:,.0f} MiB, more than max_file_mb={max_file_mb:g}. load_labelled_file holds "
            f"the data in memory (at its peak about nine times the file's size, here {9 * size_mb / 1024:.1f} GiB): "
            "pass a larger max_file_mb if this machine has the memory, or split the file, or stream it with "
            "datasets.load_dataset('csv', data_files=..., streaming=True)."
        )


def _refuse_other_formats(path: Path) -> None:
    """Recognise UTF-16 text and spreadsheets saved under a text file's name, from the first bytes."""
    with open(path, "rb") as handle:
        start = handle.read(4096)
    if start.startswith(b"PK\x03\x04"):
        raise DataValidationError(
            f"{path.name} is a zip file (an Excel workbook, for example), not text. Open it in your spreadsheet "
            "program and save it as 'CSV UTF-8'."
        )
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or start.count(0) > len(start) // 4:
        raise DataValidationError(
            f"{path.name} is saved as UTF-16 (spreadsheet programs call it 'Unicode text'), not UTF-8. Save it as "
            f"UTF-8 ('CSV UTF-8'), or convert it, e.g. `iconv -f UTF-16 -t UTF-8 {path.name} > fixed_{path.name}`."
        )


def _encoding_error(path: Path) -> DataValidationError:
    """Where a file stops being UTF-8, and what its encoding probably is."""
    raw, name = path.read_bytes(), path.name
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start
    else:  # only a byte-order mark in the wrong place gets here
        return DataValidationError(
            f"{name} cannot be read as UTF-8. Save it as UTF-8 (spreadsheet programs: 'CSV UTF-8')."
        )
    line, byte = raw.count(b"\n", 0, offset) + 1, raw[offset : offset + 1]
    try:
        raw.decode("cp1252")
    except UnicodeDecodeError:
        advice = (
            "Its encoding is neither UTF-8 nor Windows-1252: find out which it is (e.g. `file -i "
            f"{name}`), then save the file as UTF-8 or convert it with iconv."
        )
    else:
        if re.search(rb"[\x80-\x9f]", raw):
            family = "Windows-1252 (cp1252; not Latin-1, which misreads its curly quotes, dashes and euro signs)"
        else:
            family = "Windows-1252 (cp1252; Latin-1 reads this file the same)"
        advice = (
            f"It looks like {family}, the encoding of Excel and Notepad on Western-European Windows, in which "
            f"that byte is {byte.decode('cp1252')!r}. Save the file as UTF-8 (spreadsheet programs: 'CSV UTF-8'), "
            f"or convert it, e.g. `iconv -f CP1252 -t UTF-8 {name} > fixed_{name}`."
        )
    return DataValidationError(
        f"{name}: line {line} is not valid UTF-8 (byte 0x{byte.hex()} at offset {offset}). {advice}"
    )


@contextlib.contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    """Let the csv module read fields up to ``limit`` characters (default 131,072), then restore it.

    The limit is a setting of the whole csv module; it is raised only while one file is read.
    """
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, min(limit, 2**31 - 1)))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_delimited(handle, path: Path, delimiter: str, text_column: str, label_column: str) -> _Cells:
    """Read a CSV file (with CSV quoting) or a TSV file (literally, without quoting)."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
    cells = _Cells()
    with _csv_field_limit(path.stat().st_size + 1):
        try:
            header = next((row for row in reader if any(cell.strip() for cell in row)), None)
            if header is None:
                raise DataValidationError(f"{path.name} is empty. Add a header row and one row per example.")
            names = [cell.strip() for cell in header]
            text_index, label_index = _column_indexes(names, path.name, text_column, label_column, delimiter)
            row_start = reader.line_num + 1
            for row in reader:
                if any(cell.strip() for cell in row):
                    if len(row) != len(header):
                        raise _field_count_error(row, len(header), row_start, reader.line_num, path.name, delimiter)
                    cells.add(row[text_index], row[label_index], row_start)
                row_start = reader.line_num + 1
        except csv.Error as error:
            raise _csv_error(error, reader.line_num, path.name) from None
    if delimiter == "\t":
        _note_quoted_tsv_cells(cells)
    return cells


def _column_indexes(
    names: list[str], file: str, text_column: str, label_column: str, delimiter: str
) -> tuple[int, int]:
    """Positions of the text and label columns in a header, each of which must be there exactly once."""
    missing = [column for column in (text_column, label_column) if column not in names]
    if missing:
        raise _missing_columns_error(file, missing, names, delimiter)
    for column in (text_column, label_column):
        positions = [number for number, name in enumerate(names, start=1) if name == column]
        if len(positions) > 1:
            raise DataValidationError(
                f"{file}: the header names the column {column!r} {len(positions)} times (columns "
                f"{', '.join(map(str, positions))}). Rename or delete the extra ones, so that it is clear which to use."
            )
    return names.index(text_column), names.index(label_column)


def _missing_columns_error(
    file: str, missing: list[str], available: list[str], delimiter: str | None
) -> DataValidationError:
    """No such column: say which columns there are, and what probably went wrong."""
    others = [sep for sep in ",;\t|" if sep != delimiter]
    if len(available) == 1 and delimiter and any(sep in available[0] for sep in others):
        used = next(sep for sep in others if sep in available[0])
        expected = "a tab" if delimiter == "\t" else repr(delimiter)
        advice = (
            f"The header {available[0]!r} was read as one column: the file seems to separate its columns "
            f"with another character than {expected} ({used!r} here). Save it as CSV with commas (or as .tsv if it "
            "uses tabs)."
        )
    elif len(available) >= 2:
        advice = (
            f"Pass the right names, e.g. load_labelled_file(path, text_column={available[0]!r}, "
            f"label_column={available[-1]!r})."
        )
    else:
        advice = "A classifier needs a column of texts and a column of labels."
    return DataValidationError(
        f"{file}: no column(s) {', '.join(repr(c) for c in missing)}; the columns are {short_list(available)}. {advice}"
    )


def _field_count_error(
    row: list[str], expected: int, start: int, end: int, file: str, delimiter: str
) -> DataValidationError:
    if any("\n" in cell for cell in row):
        return DataValidationError(
            f"{file}, line {start}: a double quote opened on this line seems never to be closed, "
            "so the lines after it were read into one field. Close the quote, or double the quotes "
            'inside a quoted text ("She said ""wow"".").'
        )
    advice = (
        "A .tsv file cannot have tabs inside a text: replace them by spaces."
        if delimiter == "\t"
        else "Quote texts that contain ',' with double quotes."
    )
    return DataValidationError(f"{file}, line {end}: {len(row)} fields but the header has {expected}. {advice}")


def _csv_error(error: csv.Error, line: int, file: str) -> DataValidationError:
    if "NUL" in str(error):
        return DataValidationError(
            f"{file}, line {line}: the line contains a zero byte (NUL), which text files do not have. The "
            "file may be damaged or not a text file: export it again from where it came from."
        )
    return DataValidationError(
        f"{file}, line {line}: {error}. Check the quotes on that line: a text that "
        'contains quotes must be quoted itself, with inner quotes doubled ("She said ""wow"".").'
    )


def _note_quoted_tsv_cells(cells: _Cells) -> None:
    quoted = [
        row
        for row, cells_of_row in enumerate(zip(cells.texts, cells.labels))
        if any(len(cell) >= 2 and cell[0] == cell[-1] == '"' for cell in cells_of_row)
    ]
    if quoted:
        cells.notes.append(
            f"cells wrapped in double quotes on {cells.where(quoted)} keep their quotes: a .tsv file is read "
            "literally, without CSV quoting; if a spreadsheet added them, save the file as .csv instead"
        )


def _read_json_lines(handle, file: str, text_column: str, label_column: str) -> _Cells:
    """Read JSON Lines: one object per line (only line ends end a line: U+2028 may be inside a string)."""
    cells, keys = _Cells(), {}
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        record = _parse_json(line, file, f"line {number}")
        if not isinstance(record, dict):
            raise DataValidationError(
                f"{file}, line {number}: expected a JSON object, got {_json_kind(record)}. "
                f"Write one object per line, such as {JSON_EXAMPLE}."
            )
        keys.update(dict.fromkeys(record))
        cells.add(record.get(text_column), record.get(label_column), number)
    if not keys and not cells.lines:
        raise DataValidationError(f"{file} is empty. Write one JSON object per line, such as {JSON_EXAMPLE}.")
    _require_keys(keys, file, text_column, label_column)
    return cells


def _read_json_document(path: Path, text_column: str, label_column: str) -> _Cells:
    """Read a ``.json`` file: one array of objects (or JSON Lines saved as .json)."""
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise DataValidationError(f"{path.name} is empty. Write an array of objects such as [{JSON_EXAMPLE}, ...].")
    try:
        document = _loads_json(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # several values one after another: JSON Lines
            return _read_json_lines(io.StringIO(text, newline=""), path.name, text_column, label_column)
        raise _json_error(path.name, f"line {error.lineno}", error.msg) from None
    except _DuplicateKeyError as error:
        raise _duplicate_key_error(path.name, "an object", error) from None
    if isinstance(document, dict):
        if text_column not in document or isinstance(document[text_column], list):
            raise _json_object_error(document, path.name, text_column, label_column)
        document = [document]  # a single example
    elif not isinstance(document, list):
        raise DataValidationError(
            f"{path.name} holds {_json_kind(document)}, not an array of examples such as [{JSON_EXAMPLE}, ...]."
        )
    return _cells_of_array(document, path.name, text_column, label_column)


def _cells_of_array(records: list, file: str, text_column: str, label_column: str) -> _Cells:
    if not records:
        raise DataValidationError(f"{file} holds an empty array. Add one object per example.")
    cells, keys = _Cells(unit="item"), {}
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DataValidationError(
                f"{file}, item {number} of the array: expected a JSON object, got "
                f"{_json_kind(record)}. Write each example as {JSON_EXAMPLE}."
            )
        keys.update(dict.fromkeys(record))
        cells.add(record.get(text_column), record.get(label_column), number)
    _require_keys(keys, file, text_column, label_column)
    return cells


def _require_keys(keys: dict, file: str, text_column: str, label_column: str) -> None:
    missing = [column for column in (text_column, label_column) if column not in keys]
    if missing:
        raise _missing_columns_error(file, missing, list(keys), delimiter=None)


def _json_object_error(document: dict, file: str, text_column: str, label_column: str) -> DataValidationError:
    """A .json file that holds one object: say where the examples are, if they are somewhere."""
    lists = {key: value for key, value in document.items() if isinstance(value, list)}
    if text_column in lists and label_column in lists:
        advice = (
            f"its keys {text_column!r} and {label_column!r} hold one list each (a column per key). Write one "
            f"object per example instead, [{JSON_EXAMPLE}, ...], e.g. with pandas: "
            "pd.DataFrame(data).to_json(path, orient='records')."
        )
    elif any(value and all(isinstance(item, dict) for item in value) for value in lists.values()):
        key, value = next((k, v) for k, v in lists.items() if v and all(isinstance(item, dict) for item in v))
        advice = (
            f"its key {key!r} holds a list of {len(value)} objects, which are probably the examples. Save that "
            f"list itself as the file (json.dump(data[{key!r}], file)), or write the examples as JSON Lines (.jsonl)."
        )
    else:
        advice = f"its keys are {list(document)[:10]}. Write the examples as an array, [{JSON_EXAMPLE}, ...]."
    return DataValidationError(f"{file} holds one JSON object, not an array of examples: {advice}")


def _loads_json(text: str) -> object:
    """Parse JSON keeping numbers as written, treating NaN as missing, and refusing duplicate keys."""
    return json.loads(
        text,
        object_pairs_hook=_unique_keys,
        parse_int=_JsonNumber,
        parse_float=_JsonNumber,
        parse_constant=lambda name: None if name == "NaN" else _JsonNumber(name),
    )


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen.add(key)
    return dict(pairs)


def _parse_json(text: str, file: str, where: str) -> object:
    try:
        return _loads_json(text)
    except json.JSONDecodeError as error:
        raise _json_error(file, where, error.msg) from None
    except _DuplicateKeyError as error:
        raise _duplicate_key_error(file, where, error) from None


def _json_error(file: str, where: str, problem: str) -> DataValidationError:
    return DataValidationError(
        f"{file}, {where}: not valid JSON ({problem}). Each example must be one object such as {JSON_EXAMPLE}: "
        "JSON Lines (.jsonl) have one per line, a .json file holds an array of them."
    )


def _duplicate_key_error(file: str, where: str, error: _DuplicateKeyError) -> DataValidationError:
    return DataValidationError(
        f"{file}, {where}: the key {error.args[0]!r} appears twice in one object; JSON would silently keep only "
        "the last. Delete the one you do not mean."
    )


def _json_kind(value: object) -> str:
    if isinstance(value, _JsonNumber):
        return "a number"
    kinds = {str: "a string", bool: "true/false", list: "an array", dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


# ---- checking the cells


def _clean_texts(cells: _Cells, file: str, column: str) -> list[str]:
    """The texts without surrounding spaces (reported); an empty or non-text cell is an error."""
    not_text = [row for row, value in enumerate(cells.texts) if value is not None and not _is_plain_string(value)]
    if not_text:
        raise DataValidationError(
            f"{file}: column {column!r} holds {_json_kind(cells.texts[not_text[0]])} instead of a text on "
            f'{cells.where(not_text)}. Write texts as JSON strings ("..."), or check that text_column and '
            "label_column are not swapped."
        )
    texts = [value.strip() if value is not None else "" for value in cells.texts]
    with_nul = [row for row, text in enumerate(texts) if "\x00" in text]
    if with_nul:
        raise DataValidationError(
            f"{file}: column {column!r} holds a zero character (NUL, \\u0000) inside the text on "
            f"{cells.where(with_nul)}. Text has no such character: the file may be damaged or exported "
            "wrongly. Delete the character, or export the file again from where it came from."
        )
    empty = [row for row, text in enumerate(texts) if not text]
    if empty:
        raise DataValidationError(
            f"{file}: column {column!r} is empty on {cells.where(empty)}. Fill in or delete those rows."
        )
    _note_stripped(cells, cells.texts, texts, "texts")
    return texts


def _clean_labels(cells: _Cells, file: str, column: str, label_names: list[str] | None) -> list[str]:
    """The labels as strings without surrounding spaces (reported); empty or missing-value labels are errors."""
    wrong = [row for row, value in enumerate(cells.labels) if isinstance(value, (list, dict))]
    if wrong:
        raise DataValidationError(
            f"{file}: column {column!r} holds {_json_kind(cells.labels[wrong[0]])} on {cells.where(wrong)}; "
            "a label must be one string or number."
        )
    written = [_label_text(value) for value in cells.labels]
    labels = [label.strip() for label in written]
    empty = [row for row, label in enumerate(labels) if not label]
    if empty:
        raise DataValidationError(
            f"{file}: column {column!r} is empty on {cells.where(empty)}. Every example needs a label."
        )
    allowed = {str(name) for name in label_names or []}
    markers = [
        row for row, label in enumerate(labels) if label.casefold() in MISSING_VALUE_MARKERS and label not in allowed
    ]
    if markers:
        shown = ", ".join(repr(marker) for marker in sorted({labels[row] for row in markers}))
        raise DataValidationError(
            f"{file}: column {column!r} holds {shown} on {cells.where(markers)}, which usually marks a "
            "missing label. Fill in those labels or delete the rows; if it really is a class, pass "
            "label_names with all your classes, including it."
        )
    _note_stripped(cells, written, labels, "labels")
    return labels


def _is_plain_string(value: object) -> bool:
    return isinstance(value, str) and not isinstance(value, _JsonNumber)


def _label_text(value: object) -> str:
    """A label cell as text, spelled as in the file (JSON true/false stay lower case; null is empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _note_stripped(cells: _Cells, before: list, after: list[str], what: str) -> None:
    changed = [row for row, (old, new) in enumerate(zip(before, after)) if old is not None and old != new]
    if changed:
        cells.notes.append(f"spaces around the {what} removed on {cells.where(changed)}")


def _check_labels(cells: _Cells, labels: list[str], file: str, column: str, label_names: list[str] | None) -> list[str]:
    """The class names: ``label_names``, or the labels found; refuse variants, unknown labels and a single class."""
    found = sorted(set(labels), key=_label_sort_key)
    first_row = {}
    for row, label in enumerate(labels):
        first_row.setdefault(label, row)
    by_key: dict[str, list[str]] = {}
    for label in found:
        by_key.setdefault(_spelling_key(label), []).append(label)
    clashes = [variants for variants in by_key.values() if len(variants) > 1]
    if clashes:
        raise _variants_error(clashes[0], [first_row[v] for v in clashes[0]], cells, file, column)
    names = found if label_names is None else [str(name) for name in label_names]
    known = set(names)
    unknown = [row for row, label in enumerate(labels) if label not in known]
    if unknown:
        raise _unknown_labels_error(sorted({labels[row] for row in unknown}), unknown, names, cells, file, column)
    if label_names is None:
        _refuse_abbreviations(found, first_row, cells, file, column)
        _refuse_fractions(found, first_row, cells, file, column)
    if len(found) < 2:
        raise DataValidationError(
            f"{file}: column {column!r} has only one class ({found[0]!r}). A classifier "
            "needs examples of at least two classes: add examples of the other class(es), or check that "
            f"label_column={column!r} is really the label column."
        )
    return names


def _refuse_abbreviations(found: list[str], first_row: dict, cells: _Cells, file: str, column: str) -> None:
    """Refuse a label that is the start of another ("pos" and "positive"): most likely one class written twice."""
    pair = _abbreviation(sorted(label for label in found if _as_number(label) is None))
    if pair is not None:
        short, long = pair
        raise DataValidationError(
            f"{file}: column {column!r} has the labels {short!r} and {long!r} (first on {cells.unit}s "
            f"{cells.lines[first_row[short]]} / {cells.lines[first_row[long]]}): the first looks like an "
            "abbreviation of the second, and they would become separate classes. Write each class one way "
            "everywhere; if they really are different classes, pass label_names with all of them."
        )


def _abbreviation(labels: list[str]) -> tuple[str, str] | None:
    """The first (short, long) pair of labels where the short one is a word that the long one continues with
    letters ("pos", "positive"; not "class1", "class10"). Sorted by key, a label's continuations follow it."""
    keyed = sorted((_spelling_key(label), label) for label in labels)
    for index, (key, label) in enumerate(keyed):
        if len(key) < 2 or not key[-1].isalpha():
            continue
        for other_key, other in keyed[index + 1 :]:
            if not other_key.startswith(key):
                break
            if other_key[len(key)].isalpha():
                return label, other
    return None


def _refuse_fractions(found: list[str], first_row: dict, cells: _Cells, file: str, column: str) -> None:
    """Refuse labels that are fractions (0.25, 0.5): scores or ratings, of which every value would become a class."""
    fractions = [label for label in found if "." in (_as_number(label) or "")]
    if fractions:
        raise DataValidationError(
            f"{file}: column {column!r} holds fractions such as {fractions[0]!r} (first on {cells.unit} "
            f"{cells.lines[first_row[fractions[0]]]}; {len(found)} different values in all): scores or ratings, "
            "not classes, and every value would become a class of its own. Turn them into classes first (e.g. "
            "positive for a rating of at least 0.5), or pass label_names if these values really are the classes."
        )


def _visible_form(label: str) -> str:
    """The label as it looks: invisible format characters (zero-width space, ...) dropped, accents composed (NFC)."""
    return unicodedata.normalize("NFC", "".join(ch for ch in label if unicodedata.category(ch) != "Cf"))


def _as_number(label: str) -> str | None:
    """The value of a label that is a number, written one way ("1.0", "1" and "01" all give "1")."""
    try:
        number = decimal.Decimal(label)
    except decimal.InvalidOperation:
        return None
    return format(number.normalize(), "f") if number.is_finite() else None


def _spelling_key(label: str) -> str:
    """What two spellings of one label have in common: the number, or the visible text without case and spacing.

    >>> _spelling_key("1.0") == _spelling_key("01") == _spelling_key("1")
    True
    >>> _spelling_key("Very  Positive") == _spelling_key("very positive")
    True
    """
    visible = _visible_form(label)
    return _as_number(visible) or " ".join(visible.casefold().split())


def _look_alike(first: str, second: str) -> bool:
    return first != second and _visible_form(first) == _visible_form(second)


def _variants_error(variants: list[str], rows: list[int], cells: _Cells, file: str, column: str) -> DataValidationError:
    invisible = _look_alike(variants[0], variants[1])
    shown = " / ".join(ascii(v) if invisible else repr(v) for v in variants)
    if all(_as_number(v) is not None for v in variants):
        fix = "they are the same number: write it the same way everywhere"
    elif invisible:
        fix = (
            "they look the same but are different characters (shown with escapes: an accent stored as a separate "
            "mark, or an invisible character such as a zero-width space); retype the label on those lines"
        )
    else:
        fix = "write each label the same way everywhere (same capitals and spaces)"
    first = " / ".join(str(cells.lines[row]) for row in rows)
    return DataValidationError(
        f"{file}: column {column!r} spells one label in different ways: {shown} (first on {cells.unit}s {first}). "
        f"They would become separate classes; {fix}."
    )


def _unknown_labels_error(
    unknown: list[str], rows: list[int], names: list[str], cells: _Cells, file: str, column: str
) -> DataValidationError:
    hint = "Fix the typos, or pass label_names with every label you use."
    name_of_key = {_spelling_key(name): name for name in reversed(names)}  # the first name of each key
    near = [(label, name_of_key[key]) for label in unknown if (key := _spelling_key(label)) in name_of_key]
    if near:
        label, name = near[0]
        if _look_alike(label, name):
            written = f"{label!a} and {name!a} (shown with escapes)"
        else:
            written = f"{label!r} and {name!r}"
        hint = f"{written} differ only in how they are written: write the labels exactly as in label_names."
    elif all(label.isdigit() and int(label) < len(names) for label in unknown):
        hint = (
            f"The file seems to store class numbers: write the names {short_list(names)} in the file, or "
            "pass label_names=None to use the numbers as they are."
        )
    return DataValidationError(
        f"{file}: column {column!r} has unknown label(s) {short_list(unknown)} on {cells.where(rows)}; "
        f"expected one of {short_list(names)}. {hint}"
    )


def _label_sort_key(label: str) -> tuple[int, float, str]:
    """Sort numeric labels numerically ("2" before "10") and the rest alphabetically."""
    try:
        number = float(label)
    except ValueError:
        number = math.nan
    return (0, number, label) if math.isfinite(number) else (1, 0.0, label)


# ---- what the report says about the rows


def _note_duplicates(
    cells: _Cells, texts: list[str], labels: list[str], report: DataReport, drop_duplicates: bool
) -> list[int]:
    """Count and note duplicates and texts with several labels (texts compared by ``text_key``, so Unicode
    forms and spacing are noted apart from exact duplicates); return the rows to keep."""
    keys = [text_key(text) for text in texts]
    first: dict[str, int] = {}  # key -> the row where it first appears
    other_labels: dict[tuple[str, str], int] = {}  # (key, label) -> first row, for a text's second, third... label
    exact, variants = [], []
    for row, (key, label) in enumerate(zip(keys, labels)):
        seen = first.setdefault(key, row)
        if seen == row:
            continue
        earlier = seen if labels[seen] == label else other_labels.get((key, label))
        if earlier is None:
            other_labels[(key, label)] = row
        else:
            (exact if texts[row] == texts[earlier] else variants).append(row)
    unique = sorted([*first.values(), *other_labels.values()])
    noisy = {key for key, _ in other_labels}
    conflicting = [row for row in unique if keys[row] in noisy]
    report.conflicting_duplicates = len(noisy)
    action = "dropped" if drop_duplicates else "kept (drop_duplicates=False)"
    if exact:
        report.notes.append(f"exact duplicates {action} on {cells.where(exact)}")
    if variants:
        report.notes.append(
            f"duplicates that differ only in Unicode form or spacing {action} on {cells.where(variants)}"
        )
    if conflicting:
        report.notes.append(
            f"texts with different labels on {cells.where(conflicting)} are kept; check them, they are label noise"
        )
    if not drop_duplicates:
        return list(range(len(texts)))
    report.duplicates_dropped, report.rows_kept = len(exact) + len(variants), len(unique)
    return unique


def text_key(text: str) -> str:
    """A text as duplicates and split overlaps are found: Unicode NFKC form, runs of spaces as one space.

    >>> text_key("Caf\u00e9  au lait") == text_key("Cafe\u0301 au lait ")
    True
    """
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _note_multi_line(cells: _Cells, texts: list[str], report: DataReport) -> None:
    multi_line = [row for row, text in enumerate(texts) if "\n" in text]
    if multi_line:
        report.notes.append(
            f"texts spanning several lines start on {cells.where(multi_line)}; if that "
            "is not intended, look for a double quote that is not closed"
        )


def _note_label_counts(labels: list[str], names: list[str], report: DataReport) -> None:
    counts = collections.Counter(labels)
    report.label_counts = {name: counts[name] for name in names}
    absent = [name for name in names if counts[name] == 0]
    if absent:
        report.notes.append(f"no examples of {absent}: a model cannot learn a class it never sees")


def _note_truncation(
    cells: _Cells, texts: list[str], rows: list[int], tokenizer, max_length: int, report: DataReport
) -> None:
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    too_long = [row for row, length in zip(rows, lengths) if length > max_length]
    report.max_length, report.too_long = max_length, len(too_long)
    if too_long:
        report.notes.append(
            f"over-long texts on {cells.where(too_long)}; the longest has {max(lengths)} tokens "
            "(raise max_length, or accept that their ends are cut off)"
        )



"""Fine-tuning data in OpenAI's JSONL formats: a strict validator, and conversion to TRL.

A JSONL file holds one JSON object per line. OpenAI's hosted fine-tuning takes two kinds:

- ``"chat"`` (supervised fine-tuning)::

    {"messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "...", "weight": 0},
                  {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}]}

  Conversations may have many turns. Every assistant message is trained on unless it
  carries ``"weight": 0`` (``1``, the default, means "train on it"); OpenAI's API reference
  documents ``weight`` as 0 or 1, on assistant messages only.

- ``"preference"`` (direct preference optimisation, DPO)::

    {"input": {"messages": [{"role": "user", "content": "..."}]},
     "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

  as in OpenAI's guide (https://developers.openai.com/api/docs/guides/direct-preference-optimization):
  each output is a list holding one assistant message.

``validate_files`` checks a training file (and a validation file) strictly. Its categories
include those of the OpenAI cookbook's check, "Data preparation and analysis for chat model
fine-tuning" (openai/openai-cookbook, examples/Chat_finetuning_data_prep.ipynb): ``data_type``,
``missing_messages_list``, ``message_missing_key``, ``message_unrecognized_key``,
``unrecognized_role``, ``missing_content`` and ``example_missing_assistant_message``. It adds
checks the cookbook lacks (weights, preference records, duplicates, train/validation overlap,
context limits, and damaged files), and reports every problem with its file, line and fix.
Counts are numbers of lines with a problem of that category (the cookbook counts messages).

Tool and function calling are outside this course: records that use them are reported
(not silently converted without their tools).

Conversion: ``to_trl_sft`` and ``to_trl_dpo`` give TRL's conversational formats
(``messages``; ``prompt``/``chosen``/``rejected``). TRL's ``assistant_only_loss`` cannot honour
``weight: 0`` (and needs ``{% generation %}`` markers that SmolLM2's chat template lacks), so
``tokenize_with_loss_mask`` tokenizes a conversation with per-turn labels instead; SFTTrainer
uses a ``labels`` column of a pre-tokenized data set as it is.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from utils.language_modeling import IGNORE_INDEX
from utils.messages import listing

CHAT = "chat"
PREFERENCE = "preference"
KINDS = (CHAT, PREFERENCE)

MAX_LINE_BYTES = 8 * 2**20  # one record; far above any context limit, it bounds the memory a line may take
MAX_FILE_BYTES = 512 * 2**20  # larger files are refused before reading: split them
MAX_NESTING_DEPTH = 32  # a valid record nests 4 levels deep; deeper JSON is rejected, not recursed into
MAX_INTEGER_DIGITS = 20  # a valid record's only number is a weight of 0 or 1; longer integers are refused unparsed
# Tokens per example when no context_limit is given: the training context of gpt-4o-mini in OpenAI's
# fine-tuning documentation; records are counted with o200k_base (utils.token_costs.count_record_tokens).
DEFAULT_CONTEXT_LIMIT = 65_536
BOM = "\ufeff"
ISSUES_KEPT = 100  # per file and category, so a damaged file cannot fill memory; counts stay exact

NUL = b"\x00"
ROLES = ("system", "user", "assistant")
CHAT_MESSAGE_KEYS = ("role", "content", "name", "weight")  # the cookbook's list, without function calls
PREFERENCE_MESSAGE_KEYS = ("role", "content", "name")
TOOL_KEYS = ("tools", "parallel_tool_calls")  # accepted when no tools are defined ("tools": [])

# Every category, in the order reports list them, with what to do about it.
CATEGORIES: dict[str, str] = {
    "unreadable_file": "check the path; the file must be a readable JSONL file under the size limit (split large files)",
    "binary_file": "this is not JSONL text: decompress or export it as UTF-8 text, one JSON object per line",
    "byte_order_mark": "save the file as UTF-8 without a byte-order mark (BOM); the rest of the line is checked as it is",
    "empty_file": "the file holds no records: write one JSON object per line",
    "line_too_long": "the line is over the byte limit: shorten or split the example (it cannot fit a context anyway)",
    "not_utf8": "re-save the file as UTF-8 (spreadsheet tools often write Latin-1 or UTF-16)",
    "blank_line": "delete the empty line: every line must hold one record",
    "invalid_json": "make the line one complete JSON object (no trailing commas, double-quoted keys, no NaN)",
    "too_deeply_nested": f"a record nests at most a few levels: flatten it (limit {MAX_NESTING_DEPTH})",
    "data_type": "each line, and each message, must be a JSON object ({...})",
    "record_unrecognized_key": "remove the key (tool definitions are not supported here)",
    "missing_messages_list": 'give the record a non-empty "messages" list (input.messages for preference data)',
    "message_missing_key": 'every message needs a "role" and a "content"',
    "message_unrecognized_key": 'keep only "role", "content" and "name" (and "weight" on the assistant messages of chat data)',
    "unrecognized_role": 'use "system", "user" or "assistant"',
    "missing_content": '"content" must be non-empty text (a string)',
    "example_missing_assistant_message": "add the assistant's answer: without one there is nothing to train on",
    "last_message_not_assistant": "end the conversation with the assistant's answer: messages after the last "
    "answer are never trained on",
    "invalid_name": '"name" must be a non-empty string (the participant\'s name)',
    "invalid_weight": '"weight" must be the integer 0 or 1, and only on assistant messages',
    "no_trained_assistant_message": "every assistant message has weight 0: set at least one to 1 (or drop the key)",
    "malformed_preference": 'give "input" {"messages": [...]} ending before the answer, and "preferred_output" and '
    '"non_preferred_output" as lists of one (different) assistant message each',
    "duplicate": "remove the repeated record: duplicates weigh some examples more than others",
    "train_validation_overlap": "remove it from one of the files: a validation example seen in training "
    "makes the validation loss look better than it is",
    "over_context_limit": "shorten the example or split the conversation: it would be truncated in training",
}


class FormatError(ValueError):
    """A file failed strict validation; ``report`` holds every problem found."""

    def __init__(self, report: ValidationReport):
        super().__init__(str(report))
        self.report = report


@dataclass(frozen=True)
class Issue:
    """One problem: where it is (line 0 means the file as a whole), its category, and what is wrong."""

    file: str
    line: int
    category: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        return f"{where}: {self.detail}"


@dataclass(frozen=True)
class ValidationReport:
    """What ``validate_files`` found.

    ``counts`` maps each category found to its number of lines (exact); ``issues`` keeps the
    first ``ISSUES_KEPT`` issues per file and category, in file order.
    """

    kind: str
    lines_read: dict[str, int]
    counts: dict[str, int]
    issues: tuple[Issue, ...]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.counts

    def lines(self, category: str) -> list[tuple[str, int]]:
        """``(file, line)`` of the kept issues of ``category``."""
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}; the categories are: {', '.join(CATEGORIES)}")
        return [(issue.file, issue.line) for issue in self.issues if issue.category == category]

    def __str__(self) -> str:
        files = ", ".join(f"{name} ({_count(count, 'line')})" for name, count in self.lines_read.items())
        if self.ok:
            return f"{self.kind} data OK: {files}; no problems found."
        total = sum(self.counts.values())
        parts = [f"{self.kind} data: {files}; {_count(total, 'problem')} in {_count(len(self.counts), 'category')}."]
        for category in CATEGORIES:
            if category in self.counts:
                parts.append(self._describe(category))
        return "\n".join(parts)

    def _describe(self, category: str, shown: int = 5) -> str:
        count = self.counts[category]
        kept = [issue for issue in self.issues if issue.category == category]
        lines = [f"\n{category}: {_count(count, 'line')}. Fix: {CATEGORIES[category]}."]
        lines += [f"  {issue}" for issue in kept[:shown]]
        if count > shown:
            lines.append(f"  ... and {count - shown} more (report.lines({category!r}) lists the first {len(kept)})")
        return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    """The number and the noun, plural when needed: 1 line, 2 lines, 3 categories."""
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{number:,} {noun if number == 1 else plural}"


# ------------------------------------------------------------------------------------- validation


def validate_files(
    train_path: str | os.PathLike,
    validation_path: str | os.PathLike | None = None,
    kind: str = CHAT,
    *,
    context_limit: int | None = DEFAULT_CONTEXT_LIMIT,
    count_tokens: Callable[[dict], int] | None = None,
    strict: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> ValidationReport:
    """Check OpenAI-format fine-tuning files line by line and return a ``ValidationReport``.

    ``kind`` is ``"chat"`` or ``"preference"``. With a ``validation_path``, records that also
    appear in the training file are reported there. Every record whose ``count_tokens(record)``
    exceeds ``context_limit`` is reported (for example
    ``functools.partial(utils.token_costs.count_record_tokens, encoding=...)``); by default the
    limit is ``DEFAULT_CONTEXT_LIMIT`` tokens of o200k_base, and ``context_limit=None`` turns it off.
    With ``strict=True`` any problem raises one ``FormatError`` that lists them all.

    Damaged files are reported, never crashed on: a missing or oversized file, binary data, a
    line over ``max_line_bytes``, bytes that are not UTF-8, JSON that does not parse or nests
    deeper than ``MAX_NESTING_DEPTH``. "Duplicate" means the same JSON value (keys in any order).
    """
    report, _ = _validate(
        train_path, validation_path, kind, context_limit, count_tokens, max_line_bytes, max_file_bytes
    )
    if strict and not report.ok:
        raise FormatError(report)
    return report


def read_records(
    path: str | os.PathLike,
    kind: str = CHAT,
    *,
    context_limit: int | None = DEFAULT_CONTEXT_LIMIT,
    count_tokens: Callable[[dict], int] | None = None,
) -> list[dict]:
    """Validate one file strictly (see ``validate_files``) and return its records, in file order."""
    report, records = _validate(path, None, kind, context_limit, count_tokens, MAX_LINE_BYTES, MAX_FILE_BYTES)
    if not report.ok:
        raise FormatError(report)
    return records


def write_jsonl(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Write records as UTF-8 JSONL (one object per line, non-ASCII kept readable); return the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            if not isinstance(record, dict):
                raise TypeError(f"record {count + 1} is a {type(record).__name__}; every record must be a dict")
            handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
            count += 1
    return count


@dataclass
class _Line:
    """A line that parsed as JSON: its number, value, identity, and whether its structure is valid."""

    number: int
    value: object
    digest: bytes
    well_formed: bool


class _IssueLog:
    """Collects issues: exact counts per category, and the first ``ISSUES_KEPT`` per file and category."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.kept: list[Issue] = []
        self._per_file: Counter[tuple[str, str]] = Counter()

    def add(self, file: str, line: int, category: str, detail: str) -> None:
        self.counts[category] += 1
        self._per_file[file, category] += 1
        if self._per_file[file, category] <= ISSUES_KEPT:
            self.kept.append(Issue(file, line, category, detail))


def _validate(train_path, validation_path, kind, context_limit, count_tokens, max_line_bytes, max_file_bytes):
    """Run every check; return the report and the training file's records (valid or not)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if context_limit == DEFAULT_CONTEXT_LIMIT and count_tokens is None:
        count_tokens = _count_o200k_tokens
    if context_limit is not None and count_tokens is None:
        raise ValueError("context_limit needs count_tokens, the function that counts a record's tokens")
    if validation_path is not None and Path(train_path).resolve() == Path(validation_path).resolve():
        raise ValueError("the training and validation paths name the same file")
    log = _IssueLog()
    lines_read = {}
    scans = []
    for path in [train_path] + ([validation_path] if validation_path is not None else []):
        name = str(path)
        lines_read[name], parsed = _scan_file(Path(path), name, kind, log, max_line_bytes, max_file_bytes)
        scans.append((name, parsed))
    if len(scans) == 2:
        _report_overlap(scans[0], scans[1], log)
    if context_limit is not None:
        for name, parsed in scans:
            _report_over_limit(name, parsed, context_limit, count_tokens, log)
    issues = tuple(sorted(log.kept, key=lambda issue: (issue.file != scans[0][0], issue.line)))
    report = ValidationReport(kind, lines_read, dict(log.counts), issues)
    return report, [line.value for line in scans[0][1]]


def _count_o200k_tokens(record: dict) -> int:
    """A record's tokens in o200k_base, the encoding of gpt-4o and gpt-4.1 (the default context check)."""
    from utils.token_costs import count_record_tokens

    return count_record_tokens(record, _o200k())


@functools.cache
def _o200k():
    """The o200k_base encoding, loaded once (from the course's verified asset)."""
    from utils.token_costs import load_encoding

    return load_encoding("o200k_base")


def _scan_file(path: Path, name: str, kind: str, log: _IssueLog, max_line_bytes: int, max_file_bytes: int):
    """Check one file's lines; return the number of lines read and the lines that parsed."""
    problem = _file_problem(path, max_file_bytes)
    if problem:
        log.add(name, 0, *problem)
        return 0, []
    parsed: list[_Line] = []
    first_seen: dict[bytes, int] = {}
    count = 0
    with path.open("rb") as handle:
        for count, raw in _read_lines(handle, max_line_bytes):
            line = _check_line(name, count, raw, kind, log, max_line_bytes)
            if line is None:
                continue
            if line.digest in first_seen:
                log.add(name, count, "duplicate", f"same record as line {first_seen[line.digest]}")
            else:
                first_seen[line.digest] = count
            parsed.append(line)
    if not parsed:
        log.add(name, 0, "empty_file", "no line holds a record")
    return count, parsed


def _file_problem(path: Path, max_file_bytes: int) -> tuple[str, str] | None:
    """A reason the file cannot be read as JSONL at all, as ``(category, detail)``, or None."""
    try:
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
            return "unreadable_file", f"{path} {what}"
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8192)
    except OSError as error:
        return "unreadable_file", f"cannot read {path}: {error.strerror or error}"
    if size > max_file_bytes:
        return "unreadable_file", f"the file has {size:,} bytes, over the limit of {max_file_bytes:,}"
    if size == 0:
        return "empty_file", "the file is empty"
    for magic, what in ((b"\x1f\x8b", "gzip-compressed"), (b"PK\x03\x04", "a zip archive")):
        if head.startswith(magic):
            return "binary_file", f"the file is {what}"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "binary_file", "the file is UTF-16 text"
    if NUL in head:
        return "binary_file", f"the file holds NUL bytes (the first at byte {head.index(NUL) + 1})"
    return None


def _read_lines(handle: BinaryIO, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line number, bytes)``; a line over ``max_bytes`` is skipped unread and yields None."""
    number = 0
    while chunk := handle.readline(max_bytes + 1):
        number += 1
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            while (rest := handle.readline(2**20)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, chunk


def _check_line(name: str, number: int, raw: bytes | None, kind: str, log: _IssueLog, max_bytes: int) -> _Line | None:
    """Decode, parse and check one line; log its problems; return it if it parsed as JSON."""
    if raw is None:
        log.add(name, number, "line_too_long", f"the line is over {max_bytes:,} bytes")
        return None
    raw = raw.rstrip(b"\r\n")
    if number == 1 and raw.startswith(BOM.encode("utf-8")):
        log.add(name, number, "byte_order_mark", "the file starts with a UTF-8 byte-order mark (BOM)")
        raw = raw[len(BOM.encode("utf-8")) :]
    if not raw.strip():
        log.add(name, number, "blank_line", "the line is empty")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        log.add(name, number, "not_utf8", f"byte {raw[error.start]:#04x} at column {error.start + 1} is not UTF-8")
        return None
    try:
        value = json.loads(text, object_pairs_hook=_object_without_repeated_keys, parse_constant=_reject_constant,
                           parse_int=_bounded_int)  # fmt: skip
    except RecursionError:
        log.add(name, number, "too_deeply_nested", "the JSON nests too deeply to parse")
        return None
    except json.JSONDecodeError as error:
        log.add(name, number, "invalid_json", f"{error.msg} at column {error.colno}")
        return None
    except ValueError as error:  # raised by the hooks, or by an integer with thousands of digits
        log.add(name, number, "invalid_json", str(error))
        return None
    if _nesting_depth(value, MAX_NESTING_DEPTH) > MAX_NESTING_DEPTH:
        log.add(name, number, "too_deeply_nested", f"the JSON nests more than {MAX_NESTING_DEPTH} levels deep")
        return None
    problems = record_problems(value, kind)
    for category, details in problems.items():
        log.add(name, number, category, "; ".join(details))
    return _Line(number, value, _digest(value), well_formed=not problems)


def _object_without_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    """``json.loads`` hook: a key given twice would silently keep only its last value."""
    result = dict(pairs)
    if len(result) < len(pairs):
        seen = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f'the key "{repeated}" appears twice in one object')
    return result


def _bounded_int(digits: str) -> int:
    """``json.loads`` hook: an integer of at most ``MAX_INTEGER_DIGITS`` digits (Python's own limit is 4,300)."""
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"a number with {len(digits.lstrip('-')):,} digits (starting {digits[:8]}...): no value "
                         "in a record is that long; a weight is 0 or 1")  # fmt: skip
    return int(digits)


def _reject_constant(name: str) -> None:
    """``json.loads`` hook: Python accepts NaN and Infinity, JSON does not."""
    raise ValueError(f"{name} is not valid JSON")


def _nesting_depth(value: object, limit: int) -> int:
    """Depth of nested lists and objects (a scalar is 0), counted without recursion; stops past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= limit:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _digest(value: object) -> bytes:
    """Identity of a JSON value: equal values (keys in any order) give equal digests."""
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def _report_overlap(train: tuple[str, list[_Line]], validation: tuple[str, list[_Line]], log: _IssueLog) -> None:
    """Log validation lines whose record is also in the training file."""
    train_name, train_lines = train
    train_seen: dict[bytes, int] = {}
    for line in train_lines:
        train_seen.setdefault(line.digest, line.number)
    name, lines = validation
    for line in lines:
        if line.digest in train_seen:
            log.add(
                name,
                line.number,
                "train_validation_overlap",
                f"same record as {train_name} line {train_seen[line.digest]}",
            )


def _report_over_limit(name: str, lines: list[_Line], limit: int, count_tokens: Callable, log: _IssueLog) -> None:
    """Log well-formed records with more than ``limit`` tokens."""
    for line in lines:
        if line.well_formed and (tokens := count_tokens(line.value)) > limit:
            log.add(name, line.number, "over_context_limit", f"{tokens:,} tokens, over the limit of {limit:,}")


# ------------------------------------------------------------------------------------ record checks


def record_problems(record: object, kind: str = CHAT) -> dict[str, list[str]]:
    """Problems of one parsed record, as ``{category: [detail, ...]}`` (empty when it is valid)."""
    problems: dict[str, list[str]] = defaultdict(list)
    if not isinstance(record, dict):
        problems["data_type"].append(f"the line holds {_json_type(record)}, not an object")
    elif kind == CHAT:
        _check_chat_record(record, problems)
    elif kind == PREFERENCE:
        _check_preference_record(record, problems)
    else:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return dict(problems)


def _check_chat_record(record: dict, problems: dict[str, list[str]]) -> None:
    _check_keys(record, ("messages",), "the record", problems)
    messages = record.get("messages")
    if not _is_filled_list(messages):
        hint = ' (it looks like a preference record: use kind="preference")' if "input" in record else ""
        problems["missing_messages_list"].append(f'"messages" {_describe_list(messages)}{hint}')
        return
    for index, message in enumerate(messages, 1):
        _check_message(message, f"message {index}", CHAT_MESSAGE_KEYS, problems)
    answers = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    if not answers:
        problems["example_missing_assistant_message"].append("no message has the role assistant")
    elif isinstance(messages[-1], dict) and messages[-1].get("role") in ("system", "user"):
        problems["last_message_not_assistant"].append(f"the last message has the role {messages[-1]['role']}")
    elif all(_weight_is_zero(m) for m in answers):
        problems["no_trained_assistant_message"].append(f"all {len(answers)} assistant message(s) have weight 0")


def _check_preference_record(record: dict, problems: dict[str, list[str]]) -> None:
    _check_keys(record, ("input", "preferred_output", "non_preferred_output"), "the record", problems)
    prompt = record.get("input")
    if not isinstance(prompt, dict):
        problems["malformed_preference"].append(f'"input" {_describe_object(prompt)}')
    else:
        _check_prompt(prompt, problems)
    outputs = [_check_output(record, key, problems) for key in ("preferred_output", "non_preferred_output")]
    if None not in outputs and outputs[0] == outputs[1]:
        problems["malformed_preference"].append("the preferred and non-preferred outputs are identical")


def _check_prompt(prompt: dict, problems: dict[str, list[str]]) -> None:
    _check_keys(prompt, ("messages",), '"input"', problems)
    messages = prompt.get("messages")
    if not _is_filled_list(messages):
        problems["missing_messages_list"].append(f'"input.messages" {_describe_list(messages)}')
        return
    for index, message in enumerate(messages, 1):
        _check_message(message, f"input message {index}", PREFERENCE_MESSAGE_KEYS, problems)
    if isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        problems["malformed_preference"].append('"input.messages" ends with an assistant message, before the answer')


def _check_output(record: dict, key: str, problems: dict[str, list[str]]) -> object | None:
    """Check one output list; return its message's content when it is one assistant message."""
    output = record.get(key)
    if not isinstance(output, list) or len(output) != 1:
        problems["malformed_preference"].append(f'"{key}" {_describe_list(output)}; it must hold one assistant message')
        return None
    message = output[0]
    _check_message(message, f"{key} message", PREFERENCE_MESSAGE_KEYS, problems)
    if not isinstance(message, dict):
        return None
    if message.get("role") in ("system", "user"):
        problems["malformed_preference"].append(f'the "{key}" message has the role {message["role"]}, not assistant')
        return None
    return message.get("content")


def _check_message(message: object, where: str, allowed: tuple[str, ...], problems: dict[str, list[str]]) -> None:
    """Log the problems of one message; each defect falls in exactly one category."""
    if not isinstance(message, dict):
        problems["data_type"].append(f"{where} is {_json_type(message)}, not an object")
        return
    missing = [f'"{key}"' for key in ("role", "content") if key not in message]
    if missing:
        problems["message_missing_key"].append(f"{where} has no {' and no '.join(missing)}")
    unknown = [f'"{key}"' for key in message if key not in allowed]
    if unknown:
        problems["message_unrecognized_key"].append(f"{where} has the key(s) {listing(unknown)}")
    if "name" in message and not (isinstance(message["name"], str) and message["name"].strip()):
        problems["invalid_name"].append(f"{where} has the name {_shown(message['name'])}")
    role = message.get("role")
    if "role" in message and role not in ROLES:
        problems["unrecognized_role"].append(f"{where} has the role {_shown(role)}")
    content = message.get("content")
    if "content" in message and not (isinstance(content, str) and content.strip()):
        problems["missing_content"].append(f"{where} has {_describe_content(content)}")
    if "weight" in message and "weight" in allowed:
        weight = message["weight"]
        if role != "assistant":
            problems["invalid_weight"].append(f"{where} is not an assistant message but has a weight")
        elif type(weight) is not int or weight not in (0, 1):
            problems["invalid_weight"].append(f"{where} has the weight {_shown(weight)}")


def _check_keys(container: dict, expected: tuple[str, ...], where: str, problems: dict[str, list[str]]) -> None:
    """Log keys other than ``expected``; the tool keys pass when no tools are defined."""
    unknown = [f'"{key}"' for key in container if key not in expected + TOOL_KEYS]
    if unknown:
        problems["record_unrecognized_key"].append(f"{where} has the key(s) {listing(unknown)}")
    if container.get("tools", []) != []:
        problems["record_unrecognized_key"].append(f'{where} defines "tools" (tool calling is not supported here)')


def _shown(value: object, limit: int = 40) -> str:
    """A JSON value as written, cut to ``limit`` characters: a message never repeats a huge value."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _weight_is_zero(message: dict) -> bool:
    weight = message.get("weight", 1)
    return type(weight) is int and weight == 0


def _is_filled_list(value: object) -> bool:
    return isinstance(value, list) and len(value) > 0


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, with an article."""
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _describe_list(value: object) -> str:
    if value is None:
        return "is missing"
    if isinstance(value, list):
        return f"holds {len(value)} item(s)"
    return f"is {_json_type(value)}, not an array"


def _describe_object(value: object) -> str:
    return "is missing" if value is None else f"is {_json_type(value)}, not an object"


def _describe_content(content: object) -> str:
    if isinstance(content, str):
        return "empty content" if not content else "content that is only whitespace"
    return f"content that is {_json_type(content)}, not text"


# ------------------------------------------------------------------------------------- conversion


def record_conversations(record: dict) -> list[list[dict]]:
    """The conversations a record holds: a chat record's ``messages``; for a preference
    record, the input followed by the preferred output, and by the non-preferred output."""
    if "messages" in record:
        return [record["messages"]]
    if "input" in record:
        prompt = record["input"]["messages"]
        return [prompt + record["preferred_output"], prompt + record["non_preferred_output"]]
    raise ValueError('the record has neither "messages" (chat) nor "input" (preference)')


def to_trl_sft(record: dict) -> dict[str, list[dict]]:
    """A chat record in TRL's conversational format, ``{"messages": [{"role", "content"}, ...]}``.

    ``name`` is kept, but the chat template decides whether to show it (SmolLM2's does not),
    and ``"weight": 1``, the default, is dropped. TRL's format has no per-turn weights, so a record with ``"weight": 0``
    raises instead of being trained on in full: tokenize it with ``tokenize_with_loss_mask``.
    """
    _require_valid(record, CHAT)
    if any(message.get("weight") == 0 for message in record["messages"]):
        raise ValueError(
            'the record has an assistant message with "weight": 0, which TRL\'s conversational format cannot express; '
            "use tokenize_with_loss_mask(tokenizer, record['messages']) to build its labels instead"
        )
    return {"messages": [_plain_message(message) for message in record["messages"]]}


def to_trl_dpo(record: dict) -> dict[str, list[dict]]:
    """A preference record in TRL's conversational preference format:
    ``{"prompt": [...], "chosen": [assistant message], "rejected": [assistant message]}``."""
    _require_valid(record, PREFERENCE)
    return {
        "prompt": [_plain_message(message) for message in record["input"]["messages"]],
        "chosen": [_plain_message(message) for message in record["preferred_output"]],
        "rejected": [_plain_message(message) for message in record["non_preferred_output"]],
    }


def _require_valid(record: dict, kind: str) -> None:
    problems = record_problems(record, kind)
    if problems:
        listed = "; ".join(f"{category}: {', '.join(details)}" for category, details in problems.items())
        raise ValueError(f"not a valid {kind} record ({listed}); check files with validate_files first")


def _plain_message(message: dict) -> dict[str, str]:
    """The message without ``weight``."""
    return {key: value for key, value in message.items() if key != "weight"}


def tokenize_with_loss_mask(tokenizer, messages: list[dict]) -> dict[str, list[int]]:
    """Tokenize a conversation with ``tokenizer``'s chat template; only the assistant turns
    without ``"weight": 0`` carry loss.

    Each trained turn's tokens (its text and the end-of-turn token the template writes after
    it) keep their ids as labels; every other token (system and user turns, assistant headers,
    assistant turns with weight 0) gets -100. This extends ``utils.language_modeling.chat_example``
    (last turn only) to many turns with weights. The result (``input_ids``, ``attention_mask``,
    ``labels``) is a row of a pre-tokenized data set: SFTTrainer uses its ``labels`` as they are.
    """
    plain = [_plain_message(message) for message in messages]
    input_ids = _template_ids(tokenizer, plain)
    labels = [IGNORE_INDEX] * len(input_ids)
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        if index == 0:
            raise ValueError("the conversation starts with an assistant message: nothing comes before the answer")
        start = len(_template_ids(tokenizer, plain[:index], add_generation_prompt=True, prefix_of=input_ids))
        end = len(_template_ids(tokenizer, plain[: index + 1], prefix_of=input_ids))
        if not _weight_is_zero(message):
            labels[start:end] = input_ids[start:end]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def _template_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False, prefix_of=None) -> list[int]:
    """Token ids of ``messages`` rendered by the chat template; with ``prefix_of``, check they start it."""
    rendered = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    ids = list(rendered["input_ids"])
    if prefix_of is not None and prefix_of[: len(ids)] != ids:
        raise ValueError(
            "this chat template does not render the start of a conversation as a prefix of the whole "
            "conversation, so the tokens of each turn cannot be told apart"
        )
    return ids


def loss_segments(tokenizer, example: dict[str, list[int]]) -> list[tuple[str, bool]]:
    """Split a tokenized example into runs of text that carry loss (True) or not (False).

    ``"".join(text for text, _ in segments)`` is the decoded example; print the segments, or
    mark the trained ones, to see exactly which tokens the model learns to produce.
    """
    segments: list[tuple[str, bool]] = []
    run: list[int] = []
    trained = None
    for token, label in zip(example["input_ids"], example["labels"], strict=True):
        carries = label != IGNORE_INDEX
        if run and carries != trained:
            segments.append((tokenizer.decode(run), trained))
            run = []
        run.append(token)
        trained = carries
    if run:
        segments.append((tokenizer.decode(run), trained))
    return segments

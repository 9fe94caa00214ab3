"""Compare stored notebook outputs with fresh ones, allowing float noise in printed numbers.

Strict nbval compares output text character by character. A number computed with floats
can come out one unit different in its last printed digit on another CPU, another thread
count or another BLAS library, however far it is rounded. This plugin makes nbval compare
such numbers with a tolerance, in the spirit of doctest's ``FLOAT_CMP`` option:

- every piece of text that is not a number must still be equal, character for character,
  and line breaks must match; only the width of runs of spaces may change (table columns
  widen when a number does);
- an integer (``174``, ``8,056`` is read as ``8`` ``,`` ``056``) must be equal;
- a float (it has a decimal point or an exponent) may differ by one unit in its last printed
  digit: ``-4.4012`` matches ``-4.4011`` but not ``-4.4009``;
- a cell that computes something chaotic (a long training run, where one flipped prediction
  changes an accuracy) may declare a wider tolerance, with its reason, in a comment line::

      # NBVAL_TOLERANCE abs=0.02 int=3: 96 steps of training; measured spread 0.012 across CPUs

  ``abs=`` widens the tolerance of floats, ``rel=`` adds a relative one, ``int=`` lets
  integers differ by that much. The reason after the colon is required.

When a number differs by more than its tolerance, the failure names the number, the line
it is on, the difference and the tolerance.

The plugin also fixes the numeric environment the reference outputs were made in
(``reference_environment``): the CPU device, and one torch thread per notebook kernel.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

# The environment every notebook runs in under the test command, and when its stored
# outputs are made (`make execute`). One thread per kernel: thread counts change the order
# of float sums, and a fixed count lets notebooks run side by side on any machine.
TEST_THREADS_ENV_VAR = "COURSE_TEST_THREADS"
DEFAULT_TEST_THREADS = "1"


def reference_environment() -> dict[str, str]:
    """The environment variables under which stored outputs are made and checked."""
    threads = os.environ.get(TEST_THREADS_ENV_VAR) or DEFAULT_TEST_THREADS
    return {
        "COURSE_DEVICE": "cpu",  # a GPU machine still runs the CPU settings the outputs were made with
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "HF_EVALUATE_OFFLINE": os.environ.get("HF_EVALUATE_OFFLINE", "1"),
    }


# ----------------------------------------------------------------- tolerances

MARKER = re.compile(r"^\s*#\s*NBVAL_TOLERANCE\b(?P<spec>[^:\n]*)(?::(?P<reason>[^\n]*))?$", re.MULTILINE)
SPEC_ITEM = re.compile(r"^(abs|rel|int)=([0-9.eE+-]+)$")


class ToleranceMarkerError(ValueError):
    """A ``# NBVAL_TOLERANCE`` comment that cannot be used as written."""


@dataclass(frozen=True)
class Tolerance:
    """How far a fresh number may be from the stored one.

    Floats: ``max(one unit in the last printed digit, absolute, relative * |stored|)``.
    Integers: ``integer``.
    """

    absolute: float = 0.0
    relative: float = 0.0
    integer: int = 0
    reason: str = ""

    def for_float(self, stored: float, unit: float) -> float:
        return max(unit, self.absolute, self.relative * abs(stored))

    def describe(self, stored: float, unit: float, is_float: bool) -> str:
        if not is_float:
            return f"{self.integer} ({self.reason})" if self.integer else "0 (integers must be equal)"
        allowed = self.for_float(stored, unit)
        if allowed == unit:
            return f"{unit:g} (one unit in the last printed digit)"
        return f"{allowed:g} (declared by the cell: {self.reason})"


DEFAULT_TOLERANCE = Tolerance()


def tolerance_of_cell(source: str) -> Tolerance:
    """The tolerance a cell declares with ``# NBVAL_TOLERANCE ...: reason``, or the default."""
    matches = list(MARKER.finditer(source))
    if not matches:
        return DEFAULT_TOLERANCE
    if len(matches) > 1:
        raise ToleranceMarkerError("a cell may declare NBVAL_TOLERANCE only once")
    match = matches[0]
    reason = (match.group("reason") or "").strip()
    if not reason:
        raise ToleranceMarkerError(
            "NBVAL_TOLERANCE needs a reason after a colon, e.g. '# NBVAL_TOLERANCE abs=0.02: <why this much noise>'"
        )
    values = {"abs": 0.0, "rel": 0.0, "int": 0.0}
    items = match.group("spec").split()
    if not items:
        raise ToleranceMarkerError("NBVAL_TOLERANCE needs at least one of abs=, rel=, int=")
    for item in items:
        parsed = SPEC_ITEM.match(item)
        if not parsed:
            raise ToleranceMarkerError(f"cannot read {item!r} in NBVAL_TOLERANCE; write abs=0.01, rel=0.001 or int=2")
        values[parsed.group(1)] = float(parsed.group(2))
    if values["int"] != int(values["int"]):
        raise ToleranceMarkerError("int= takes a whole number")
    return Tolerance(values["abs"], values["rel"], int(values["int"]), reason)


# ----------------------------------------------------------------- comparing text

# A number stands alone: not inside a word (SmolLM2, q_proj, 135M) and not part of a
# dotted version (2.13.0). A sentence may end right after it ("... is 0.716.").
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w]|\.\d)")
TOKEN = re.compile(rf"(?P<number>{NUMBER.pattern})|(?P<space>[ \t]+)|(?P<newline>\r?\n)|(?P<text>.)", re.DOTALL)


@dataclass(frozen=True)
class Token:
    kind: str  # "number", "space", "newline" or "text"
    text: str
    line: int  # 1-based line of the output the token is on


def tokenize(text: str) -> list[Token]:
    """Split output text into numbers, runs of spaces, line breaks and other characters;
    neighbouring other characters are joined into one text token."""
    tokens: list[Token] = []
    line = 1
    for match in TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "text" and tokens and tokens[-1].kind == "text" and tokens[-1].line == line:
            tokens[-1] = Token("text", tokens[-1].text + match.group(), line)
        else:
            tokens.append(Token(kind, match.group(), line))
        if kind == "newline":
            line += 1
    return tokens


def _is_float(number: str) -> bool:
    return "." in number or "e" in number.lower()


def last_digit_unit(number: str) -> float:
    """One unit in the last printed digit: ``0.716`` -> 0.001, ``1.5e-05`` -> 1e-06, ``42`` -> 1."""
    mantissa, _, exponent = number.lower().lstrip("+-").partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


@dataclass(frozen=True)
class Mismatch:
    """Why two output texts do not match: a number too far off, or different text."""

    line: int
    stored: str
    actual: str
    message: str


def _line_of(text: str, line: int) -> str:
    lines = text.splitlines() or [""]
    return lines[min(line, len(lines)) - 1].strip()


def compare_numbers(stored: str, actual: str, tolerance: Tolerance) -> str | None:
    """None if ``actual`` is within tolerance of ``stored``, else the reason it is not."""
    if _is_float(stored) or _is_float(actual):
        unit = max(last_digit_unit(stored), last_digit_unit(actual))
        allowed = tolerance.for_float(float(stored), unit)
        difference = abs(float(actual) - float(stored))
        # A float printed to n decimals is exact to within rounding of its own digits.
        if difference <= allowed * (1 + 1e-9) or (math.isnan(difference) and stored == actual):
            return None
        return f"differs by {difference:.3g}, more than the tolerance {tolerance.describe(float(stored), unit, True)}"
    difference = abs(int(actual) - int(stored))
    if difference <= tolerance.integer:
        return None
    return f"differs by {difference}, more than the tolerance {tolerance.describe(0.0, 1.0, False)}"


def compare_texts(stored: str, actual: str, tolerance: Tolerance = DEFAULT_TOLERANCE) -> Mismatch | None:
    """Compare two output texts number by number; None if they match, else the first mismatch."""
    if stored == actual:
        return None
    # Runs of spaces are dropped: a table's columns widen when one of its numbers does.
    stored_tokens = [token for token in tokenize(stored) if token.kind != "space"]
    actual_tokens = [token for token in tokenize(actual) if token.kind != "space"]
    for position, (left, right) in enumerate(zip(stored_tokens, actual_tokens)):
        if left.kind != right.kind:
            return Mismatch(left.line, left.text, right.text,
                            f"the output differs at line {left.line}: stored {left.text!r}, got {right.text!r}")  # fmt: skip
        if left.kind == "number":
            reason = compare_numbers(left.text, right.text, tolerance)
            if reason:
                return Mismatch(
                    left.line, left.text, right.text,
                    f"number {left.text} on line {left.line} ({_line_of(stored, left.line)!r}): "
                    f"got {right.text}, which {reason}",
                )  # fmt: skip
        elif left.kind in ("text", "newline") and left.text != right.text:
            return Mismatch(left.line, left.text, right.text,
                            f"the text differs at line {left.line}: stored {_line_of(stored, left.line)!r}, "
                            f"got {_line_of(actual, right.line)!r}")  # fmt: skip
    if len(stored_tokens) != len(actual_tokens):
        longer = stored_tokens if len(stored_tokens) > len(actual_tokens) else actual_tokens
        extra = longer[min(len(stored_tokens), len(actual_tokens))]
        which = "stored output" if longer is stored_tokens else "fresh output"
        return Mismatch(extra.line, "", extra.text, f"the {which} goes on at line {extra.line}: {extra.text!r} ...")
    return None


# ----------------------------------------------------------------- nbval integration


def _flatten(cell, outputs, skip_compare) -> dict[str, list]:
    """nbval's view of a cell's outputs: for each output field or MIME type, the list of
    sanitized values, in order (streams of the same name joined first, as nbval does)."""
    from nbval.plugin import transform_streams_for_comparison

    flat: dict[str, list] = {}
    for output in transform_streams_for_comparison(outputs):
        for key, value in output.items():
            if key in skip_compare:
                continue
            if key == "data":
                for mime, data in value.items():
                    if mime not in skip_compare:
                        flat.setdefault(mime, []).append(cell.sanitize(data))
            else:
                flat.setdefault(key, []).append(cell.sanitize(value))
    return flat


def tolerant_compare_outputs(strict_compare):
    """Wrap nbval's ``IPyNbCell.compare_outputs``: where the strict comparison fails, accept
    outputs whose only differences are numbers within tolerance; otherwise say which number."""

    def compare_outputs(self, test, ref, skip_compare=None):
        if strict_compare(self, test, ref, skip_compare):
            return True
        skip = skip_compare or self.parent.skip_compare
        stored, fresh = _flatten(self, ref, skip), _flatten(self, test, skip)
        if stored.keys() != fresh.keys() or any(len(stored[k]) != len(fresh[k]) for k in stored):
            return False  # nbval's own message says which outputs are missing or extra
        try:
            tolerance = tolerance_of_cell(self.cell.source)
        except ToleranceMarkerError as error:
            self.comparison_traceback.append(f"NBVAL_TOLERANCE in this cell: {error}")
            return False
        for key in stored:
            for stored_value, fresh_value in zip(stored[key], fresh[key]):
                if not (isinstance(stored_value, str) and isinstance(fresh_value, str)):
                    if stored_value != fresh_value:
                        return False
                    continue
                mismatch = compare_texts(stored_value, fresh_value, tolerance)
                if mismatch is not None:
                    self.comparison_traceback.append(f"\n{key}: {mismatch.message}\n")
                    return False
        self.comparison_traceback = []
        return True

    return compare_outputs


def output_dir_sanitizer(sanitize):
    """Wrap nbval's ``sanitize`` so that the test run's temporary output folder reads as
    ``outputs``, the folder a notebook uses by default."""

    def sanitized(self, text):
        folder = os.environ.get("COURSE_OUTPUT_DIR")
        if folder and isinstance(text, str):
            text = text.replace(folder.rstrip("/"), "outputs")
        return sanitize(self, text)

    return sanitized


def markers_with_reasons(find_markers):
    """Wrap nbval's ``find_comment_markers`` so that a marker may carry its reason after a
    colon on the same line (``# NBVAL_IGNORE_OUTPUT: timings depend on the machine``).

    nbval itself recognises a marker only when it is the whole comment; without this, such
    a line would be read as an ordinary comment and the cell's output compared after all.
    """

    def find_comment_markers(cellsource):
        lines = []
        for line in cellsource.splitlines():
            comment = line.strip()
            marker, colon, _reason = comment.partition(":")
            if colon and comment.startswith("#") and marker.lstrip("#").strip().startswith("NBVAL_"):
                line = marker.rstrip()
            lines.append(line)
        return find_markers("\n".join(lines))

    return find_comment_markers


def install() -> None:
    """Patch nbval's cell comparison and its reading of comment markers (called once, from
    the root conftest.py)."""
    import nbval.plugin
    from nbval.plugin import IPyNbCell

    if getattr(IPyNbCell, "_course_tolerant", False):
        return
    IPyNbCell.compare_outputs = tolerant_compare_outputs(IPyNbCell.compare_outputs)
    IPyNbCell.sanitize = output_dir_sanitizer(IPyNbCell.sanitize)
    nbval.plugin.find_comment_markers = markers_with_reasons(nbval.plugin.find_comment_markers)
    IPyNbCell._course_tolerant = True

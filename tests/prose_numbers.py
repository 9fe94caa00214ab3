"""Numbers quoted in a notebook's prose must be numbers its outputs print.

A learner believes the output, not the prose: when a sentence quotes "0.85" or "1,007" it must be a
number the notebook computed and printed (as printed, or the printed value rounded to the digits
the prose gives), not one typed by hand that a re-run could contradict. Numbers with fewer than
three significant digits ("about 100", "4 layers") are left alone, and so are years, dates,
version numbers and numbers inside code, formulas or names. What remains and is not printed must
be on an explicit allow-list, with the reason it may stand (a fact from a paper or a document).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

SKIPPED = re.compile(
    r"```.*?```"  # fenced code
    r"|`[^`\n]*`"  # inline code
    r"|\$\$.*?\$\$|\$[^$\n]*\$"  # formulas
    r"|https?://\S+"  # links
    r"|\b\d{4}-\d{2}-\d{2}\b"  # ISO dates
    r"|\b[\w-]*[A-Za-z][\w.-]*\d[\w.-]*|\b\d[\w.-]*[A-Za-z][\w.-]*",  # names with digits (gpt-4.1, 135M, Q4_1)
    re.DOTALL,
)
NUMBER = re.compile(r"(?<![\w.,])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w]|[.,]\d)")


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "").lstrip("+"))
    except InvalidOperation:
        return None


def significant_digits(text: str) -> int:
    """Significant digits of a printed number: 0.716 -> 3, 1,007 -> 4, 25,000 -> 2, 100 -> 1."""
    digits = text.replace(",", "").lstrip("+-")
    if "." in digits:
        return len(digits.replace(".", "").lstrip("0"))
    return len(digits.lstrip("0").rstrip("0"))


def is_year(text: str) -> bool:
    return re.fullmatch(r"(19|20)\d\d", text) is not None


def prose_numbers(markdown: str) -> list[str]:
    """Numbers with at least three significant digits in a Markdown text, code and names left out."""
    text = SKIPPED.sub(" ", markdown)
    return [n for n in NUMBER.findall(text) if significant_digits(n) >= 3 and not is_year(n.replace(",", ""))]


def output_numbers(texts: list[str]) -> set[Decimal]:
    found = set()
    for text in texts:
        for match in NUMBER.findall(text):
            value = _decimal(match)
            if value is not None:
                found.add(value)
    return found


def is_printed(number: str, printed: set[Decimal]) -> bool:
    """True if ``number`` equals a printed number, or a printed number rounded to its decimals
    (a percentage may also be a printed share: 42% for 0.42)."""
    value = _decimal(number)
    if value is None:
        return False
    exponent = value.as_tuple().exponent
    candidates = {value, abs(value)}
    for candidate in candidates:
        for printed_value in printed:
            if printed_value == candidate or printed_value.quantize(Decimal(1).scaleb(exponent)) == candidate:
                return True
    return False

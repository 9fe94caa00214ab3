"""Lists inside messages, capped: an error about 20,000 classes names a few and counts the rest.

>>> listing(["a", "b", "c"], limit=2)
'a, b and 1 more'
>>> short_list(["a", "b"], limit=2)
"['a', 'b']"
>>> short_list(range(5), limit=2)
'[0, 1, ... and 3 more]'
"""

from __future__ import annotations

from collections.abc import Iterable

LIMIT = 10  # items a message lists before it counts the rest


def listing(items: Iterable[object], limit: int = LIMIT) -> str:
    """``a, b, c`` for a few items; the first ``limit`` and ``and N more`` for many."""
    items = [str(item) for item in items]
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit:,} more" if len(items) > limit else "")


def short_list(items: Iterable[object], limit: int = LIMIT) -> str:
    """``repr(list(items))`` for a few items; the first ``limit`` and ``... and N more`` inside the brackets for many."""
    items = list(items)
    if len(items) <= limit:
        return repr(items)
    return repr(items[:limit])[:-1] + f", ... and {len(items) - limit:,} more]"

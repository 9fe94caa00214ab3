"""How far the printed numbers of two executions of the same notebook are apart, cell by cell.

    python tests/compare_outputs.py notebooks/04_validation_and_overfitting.ipynb other/04_validation_and_overfitting.ipynb

For every code cell whose outputs differ, prints the largest difference between
corresponding floats and between corresponding integers, and whether any text that is not a
number differs. Use it to measure the float noise a cell's `# NBVAL_TOLERANCE` must allow:
run the notebook again with another thread count or CPU kernel level
(tests/execute_notebooks.py --copy-to) and compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbval_tolerance import tokenize


def cell_text(cell) -> str:
    """The text of a cell's outputs as nbval compares it (streams and text/plain)."""
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def differences(stored: str, fresh: str) -> tuple[float, int, bool]:
    """Largest float difference, largest integer difference, and whether other text differs."""
    left = [t for t in tokenize(stored) if t.kind != "space"]
    right = [t for t in tokenize(fresh) if t.kind != "space"]
    if len(left) != len(right):
        return float("nan"), 0, True
    largest_float, largest_int, text_differs = 0.0, 0, False
    for a, b in zip(left, right):
        if a.kind != b.kind:
            return float("nan"), 0, True
        if a.kind == "number" and a.text != b.text:
            if "." in a.text + b.text or "e" in (a.text + b.text).lower():
                largest_float = max(largest_float, abs(float(a.text) - float(b.text)))
            else:
                largest_int = max(largest_int, abs(int(a.text) - int(b.text)))
        elif a.kind != "number" and a.text != b.text:
            text_differs = True
    return largest_float, largest_int, text_differs


def main() -> int:
    stored, fresh = (nbformat.read(path, as_version=4) for path in sys.argv[1:3])
    code = [(s, f) for s, f in zip(stored.cells, fresh.cells) if s.cell_type == "code"]
    for number, (s, f) in enumerate(code, start=1):
        if cell_text(s) != cell_text(f):
            largest_float, largest_int, text_differs = differences(cell_text(s), cell_text(f))
            print(f"cell {number}: floats differ by up to {largest_float:.3g}, integers by up to {largest_int}"
                  f"{', other text differs' if text_differs else ''}  | {s.source.splitlines()[0][:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Student copies of the notebooks: solutions removed, exercise outputs cleared.

    python -m utils.handouts                    (or: make handouts)
    python -m utils.handouts --out handouts notebooks/03_training_loop.ipynb

Each cell tagged ``solution`` is replaced by an empty code cell, where the student writes
their own answer. In the Exercises section (every cell after the ``## Exercises`` heading)
the code cells lose their outputs and execution counts. Everything before that section is
copied unchanged, outputs included, so the handout still shows what each step prints.
The copies go to a folder of their own; the notebooks themselves are never changed.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
SOLUTION_TAG = "solution"
EXERCISES_HEADING = re.compile(r"^## Exercises\s*$", flags=re.MULTILINE)


def exercises_start(notebook: nbformat.NotebookNode) -> int | None:
    """Index of the markdown cell with the ``## Exercises`` heading (the last one), or None."""
    found = None
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown" and EXERCISES_HEADING.search(cell.source):
            found = index
    return found


def is_solution(cell: nbformat.NotebookNode) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def make_handout(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A student copy of ``notebook`` (which is left as it is)."""
    handout = copy.deepcopy(notebook)
    start = exercises_start(notebook)
    cells = []
    for index, cell in enumerate(handout.cells):
        if is_solution(cell):
            cell = nbformat.v4.new_code_cell("")
        elif start is not None and index > start and cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    handout.cells = cells
    return handout


def write_handouts(notebooks: list[Path], out_dir: Path) -> list[Path]:
    """Write a validated student copy of each notebook into ``out_dir``; return their paths.

    Raises ValueError if ``out_dir`` is a folder that holds one of the notebooks: a handout
    must never replace the notebook it was made from.
    """
    out_dir = Path(out_dir)
    sources = {Path(path).resolve().parent for path in notebooks}
    if out_dir.resolve() in sources:
        raise ValueError(
            f"{out_dir} holds the notebooks themselves; writing handouts there would overwrite them. "
            "Choose a folder of their own, e.g. --out handouts."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        handout = make_handout(nbformat.read(path, as_version=4))
        nbformat.validate(handout)
        target = out_dir / Path(path).name
        nbformat.write(handout, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Write handouts of the given notebooks (all of the course's by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook of the course")
    parser.add_argument("--out", type=Path, default=Path("handouts"), help="folder for the copies (default: handouts)")
    arguments = parser.parse_args(argv)
    notebooks = arguments.notebooks or sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    try:
        written = write_handouts(notebooks, arguments.out)
    except (ValueError, OSError, nbformat.ValidationError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {len(written)} handouts to {arguments.out}/ (solutions removed, exercise outputs cleared).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

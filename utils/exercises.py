"""Exercises that check themselves: ``check("03.4")`` in a notebook says whether your answer is right.

In a notebook, after you have written your answer::

    from utils.exercises import check, hint, solution
    check("03.4")      # passed, or what is wrong and a first hint
    hint("03.4", 2)    # a stronger hint
    solution("03.4")   # the solution, read from the course's notebook

A check never compares with a stored number. It recomputes the expected answer from your notebook's
own variables with a reference implementation, or it runs your function on a tiny model and looks at
what it did (did the gradients accumulate? did the learning rate move every step?), so it holds on any
CPU, on a GPU and under the larger settings. The checks of each notebook are in
``utils/exercise_checks.py``.

For an instructor, ``python -m utils.exercises report FOLDER`` prints where a room stands: for every
notebook in FOLDER (handouts the students worked in), which exercises passed, were attempted or were
not attempted, read from the saved output of each check cell (``--execute`` runs the notebooks first).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PASSED, NOT_YET, NOT_ATTEMPTED = "passed", "not yet", "not attempted"
CHECK_CALL = re.compile(r"""check\(\s*["'](\d\d\.\d+)["']""")
STATUS_LINE = re.compile(r"Exercise (\d\d\.\d+): (passed|not yet|not attempted)")


class NotYet(Exception):
    """Raised by a check when an answer is wrong; the message says what is wrong and what to try."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: the names the learner defines, the check, and hints from a nudge to a strong one."""

    exercise_id: str
    names: tuple[str, ...]
    verify: Callable[[dict], str]
    hints: tuple[str, ...]


@dataclass(frozen=True)
class CheckResult:
    """What one check found: its status and a message for the learner."""

    exercise_id: str
    status: str
    message: str

    def __str__(self) -> str:
        return f"Exercise {self.exercise_id}: {self.status}. {self.message}"


def _exercise(exercise_id: str) -> Exercise:
    from utils.exercise_checks import EXERCISES

    if exercise_id not in EXERCISES:
        known = ", ".join(sorted(EXERCISES))
        raise ValueError(f"There is no exercise {exercise_id!r}. The exercises are: {known}.")
    return EXERCISES[exercise_id]


def _describe_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def evaluate(exercise_id: str, namespace: dict) -> CheckResult:
    """Check exercise ``exercise_id`` against the variables in ``namespace``; never raises for a wrong answer."""
    exercise = _exercise(exercise_id)
    missing = [name for name in exercise.names if name not in namespace]
    if missing:
        names = ", ".join(f"`{name}`" for name in missing)
        message = f"Define {names} in the cell above, then run this cell again. Hint: {exercise.hints[0]}"
        return CheckResult(exercise_id, NOT_ATTEMPTED, message)
    try:
        return CheckResult(exercise_id, PASSED, exercise.verify(namespace))
    except NotYet as wrong:
        return CheckResult(exercise_id, NOT_YET, str(wrong))
    except Exception as error:  # noqa: BLE001 - the learner's code may raise anything; say what, without a traceback
        message = f"Running your answer raised {_describe_error(error)}. Hint: {exercise.hints[0]}"
        return CheckResult(exercise_id, NOT_YET, message)


def check(exercise_id: str, namespace: dict | None = None) -> None:
    """Print whether exercise ``exercise_id`` is solved, reading the caller's variables (a notebook's)."""
    if namespace is None:
        namespace = sys._getframe(1).f_globals
    print(evaluate(exercise_id, namespace))


def hint(exercise_id: str, level: int = 1) -> None:
    """Print hint number ``level`` (1 is a nudge, higher levels say more) of an exercise."""
    hints = _exercise(exercise_id).hints
    level = min(max(level, 1), len(hints))
    more = f" (hint({exercise_id!r}, {level + 1}) says more)" if level < len(hints) else ""
    print(f"Hint {level} of {len(hints)} for exercise {exercise_id}{more}: {hints[level - 1]}")


def _notebook_of(exercise_id: str, notebooks_dir: Path) -> Path:
    matches = sorted(notebooks_dir.glob(f"{exercise_id.split('.')[0]}_*.ipynb"))
    if not matches:
        raise FileNotFoundError(f"No notebook numbered {exercise_id.split('.')[0]} in {notebooks_dir}.")
    return matches[0]


def solution_source(exercise_id: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> str:
    """The source of the tagged solution cells of an exercise, read from the course's notebook."""
    import nbformat

    from utils.handouts import is_solution

    _exercise(exercise_id)
    number = exercise_id.split(".")[1]
    heading = re.compile(rf"^### Exercise {number}\b", flags=re.MULTILINE)
    notebook = nbformat.read(_notebook_of(exercise_id, notebooks_dir), as_version=4)
    sources, inside = [], False
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            inside = bool(heading.search(cell.source)) or (inside and "### Exercise" not in cell.source)
        elif inside and is_solution(cell):
            sources.append(cell.source)
    if not sources:
        raise LookupError(f"Exercise {exercise_id} has no tagged solution cell in its notebook.")
    return "\n\n".join(sources)


def solution(exercise_id: str) -> None:
    """Print the course's solution of an exercise (try the hints first)."""
    print(solution_source(exercise_id))


def statuses_in(notebook) -> dict[str, str]:
    """The status of each check cell of a saved notebook, read from its stored output."""
    statuses = {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for exercise_id in CHECK_CALL.findall(cell.source):
            text = "".join(output.get("text", "") for output in cell.get("outputs", []))
            found = {match[0]: match[1] for match in STATUS_LINE.findall(text)}
            statuses[exercise_id] = found.get(exercise_id, NOT_ATTEMPTED)
    return statuses


def _execute(path: Path, timeout: int) -> object:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=timeout, allow_errors=True, resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return notebook


def room_table(folder: Path, execute: bool = False, timeout: int = 900) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Status of every exercise in every notebook of ``folder``, and the notebooks that could not be read."""
    import nbformat

    table, unreadable = {}, []
    for path in sorted(Path(folder).glob("*.ipynb")):
        try:
            notebook = _execute(path, timeout) if execute else nbformat.read(path, as_version=4)
        except Exception as error:  # noqa: BLE001 - a damaged or half-saved file must not stop the report of the room
            unreadable.append(f"{path.name}: {_describe_error(error)}")
            continue
        table[path.name] = statuses_in(notebook)
    return table, unreadable


def format_room_table(table: dict[str, dict[str, str]]) -> str:
    """One line per notebook and exercise, and a count of passed / attempted / not attempted."""
    lines = [f"{'notebook':40} {'exercise':8} status"]
    counts = {PASSED: 0, NOT_YET: 0, NOT_ATTEMPTED: 0}
    for name, statuses in table.items():
        for exercise_id, status in sorted(statuses.items()):
            lines.append(f"{name:40} {exercise_id:8} {status}")
            counts[status] += 1
    lines.append(
        f"passed {counts[PASSED]}, attempted but not yet right {counts[NOT_YET]}, not attempted {counts[NOT_ATTEMPTED]}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.exercises report FOLDER``: where a room stands."""
    parser = argparse.ArgumentParser(description="Where a room stands on the course's exercises.")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="status of every exercise in a folder of notebooks")
    report.add_argument("folder", type=Path, help="a folder of notebooks, e.g. handouts/ or the students' copies")
    report.add_argument("--execute", action="store_true", help="run each notebook first (slow: minutes per notebook)")
    arguments = parser.parse_args(argv)
    if not arguments.folder.is_dir():
        print(f"ERROR: {arguments.folder} is not a folder. Give the folder that holds the notebooks.", file=sys.stderr)
        return 2
    table, unreadable = room_table(arguments.folder, execute=arguments.execute)
    if not table and not unreadable:
        print(f"ERROR: {arguments.folder} holds no notebooks (*.ipynb).", file=sys.stderr)
        return 2
    print(format_room_table(table))
    for problem in unreadable:
        print(f"WARNING: could not read {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

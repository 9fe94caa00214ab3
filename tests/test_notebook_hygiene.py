"""Rules every course notebook follows; nbval (run by the same pytest) checks their outputs."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
MAX_BYTES = 1_500_000
NAME = re.compile(r"^(\d{2})_[a-z0-9]+(_[a-z0-9]+)*\.ipynb$")
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(/home/|/root/|/Users/|/work/|/tmp/|/private/|/mnt/|/var/folders/|[A-Za-z]:\\\\)|site-packages")
SECRET = re.compile(
    r"(hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,}|(api[_-]?key|token|secret)\s*=\s*['\"][^'\"]{8,}['\"])", re.IGNORECASE
)


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    return "".join(cell["source"])


def headings(cell: dict, level: int) -> list[str]:
    if cell["cell_type"] != "markdown":
        return []
    return re.findall(rf"^{'#' * level} (.+)$", source(cell), flags=re.MULTILINE)


def output_texts(cell: dict) -> list[str]:
    texts = []
    for output in cell.get("outputs", []):
        texts.append("".join(output.get("text", "")))
        for mime, value in output.get("data", {}).items():
            if mime.startswith("text/") or mime == "application/json":
                texts.append(value if isinstance(value, str) else "".join(value) if isinstance(value, list) else json.dumps(value))
        texts.append("".join(output.get("traceback", [])))
    return texts


def test_there_are_notebooks_numbered_from_00_without_gaps():
    assert NOTEBOOKS, "no notebooks found"
    numbers = []
    for path in NOTEBOOKS:
        match = NAME.match(path.name)
        assert match, f"{path.name}: name notebooks NN_lowercase_words.ipynb"
        numbers.append(int(match.group(1)))
    assert numbers == list(range(len(numbers))), f"numbers must run 00, 01, ... without gaps: {numbers}"


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request):
    return request.param, load(request.param)


def test_size_and_kernel(notebook):
    path, nb = notebook
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes; keep it under {MAX_BYTES}"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_executed_top_to_bottom_without_errors(notebook):
    path, nb = notebook
    code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    counts = [cell["execution_count"] for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: run all cells once, top to bottom, then save"
    for number, cell in enumerate(code, start=1):
        for output in cell["outputs"]:
            assert output["output_type"] != "error", f"{path.name}, code cell {number} stored an error"
            assert "Traceback (most recent call last)" not in "".join(output.get("text", ""))


def test_opens_with_title_and_learning_goals(notebook):
    path, nb = notebook
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and source(first).startswith("# "), f"{path.name}: start with a '# Title'"
    opening = [h for cell in nb["cells"][:2] for h in headings(cell, 2)]
    assert "Learning goals" in opening, f"{path.name}: the first cells need a '## Learning goals' section"


def test_ends_with_summary_then_exercises_with_tagged_solutions(notebook):
    path, nb = notebook
    cells = nb["cells"]
    level_two = [(i, h) for i, cell in enumerate(cells) for h in headings(cell, 2)]
    titles = [h for _, h in level_two]
    assert titles[-2:] == ["Summary", "Exercises"], f"{path.name}: the last sections must be Summary, then Exercises"
    exercises_at = level_two[-1][0]
    exercises = [h for cell in cells[exercises_at:] for h in headings(cell, 3) if h.startswith("Exercise")]
    assert 2 <= len(exercises) <= 4, f"{path.name}: give 2-4 exercises ('### Exercise N: ...'), found {len(exercises)}"
    solutions = [c for c in cells[exercises_at:] if c["cell_type"] == "code"]
    assert len(solutions) >= len(exercises), f"{path.name}: every exercise needs a solution cell"
    for cell in solutions:
        assert "solution" in cell["metadata"].get("tags", []), f"{path.name}: tag solution cells 'solution'"


def test_no_machine_paths_or_secrets(notebook):
    path, nb = notebook
    for number, cell in enumerate(nb["cells"], start=1):
        for text in [source(cell), *output_texts(cell)]:
            assert not ABSOLUTE_PATH.search(text), f"{path.name}, cell {number}: absolute path {ABSOLUTE_PATH.search(text).group(0)!r}"
            assert not SECRET.search(text), f"{path.name}, cell {number}: looks like a token or key"

"""Rules every course notebook follows; nbval (run by the same pytest) checks their outputs."""

import json
import re
from pathlib import Path

import pytest
from prose_numbers import is_printed, output_numbers, prose_numbers

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


CHECK_CALL_CELL = re.compile(r"""^check\("(\d\d\.\d+)"\)$""")
CHECKER_IMPORT = "from utils.exercises import check, hint, solution  # noqa: F401 - hint() and solution() are yours to call"


def exercise_section(nb: dict) -> list[dict]:
    level_two = [(i, h) for i, cell in enumerate(nb["cells"]) for h in headings(cell, 2)]
    return nb["cells"][level_two[-1][0]:]


def test_ends_with_summary_then_exercises_with_tagged_solutions(notebook):
    path, nb = notebook
    titles = [h for cell in nb["cells"] for h in headings(cell, 2)]
    assert titles[-2:] == ["Summary", "Exercises"], f"{path.name}: the last sections must be Summary, then Exercises"
    exercises = [h for cell in exercise_section(nb) for h in headings(cell, 3) if h.startswith("Exercise")]
    assert 2 <= len(exercises) <= 4, f"{path.name}: give 2-4 exercises ('### Exercise N: ...'), found {len(exercises)}"
    solutions = [c for c in exercise_section(nb) if "solution" in c["metadata"].get("tags", [])]
    assert len(solutions) >= len(exercises), f"{path.name}: every exercise needs a tagged solution cell"


def test_every_exercise_checks_itself_and_its_solution_passes(notebook):
    """Each exercise: its tagged solution, then a one-line check cell whose stored output says it passed."""
    path, nb = notebook
    number = path.name[:2]
    code_cells = [c for c in exercise_section(nb) if c["cell_type"] == "code"]
    assert code_cells and source(code_cells[0]).strip() == CHECKER_IMPORT, f"{path.name}: import the checker first"
    exercises = [h for cell in exercise_section(nb) for h in headings(cell, 3) if h.startswith("Exercise")]
    checked = []
    for cell in code_cells[1:]:
        if "solution" in cell["metadata"].get("tags", []):
            continue
        found = CHECK_CALL_CELL.match(source(cell).strip())
        assert found, f"{path.name}: an exercise's code cell is a tagged solution or one check(...) call: {source(cell)[:80]!r}"
        checked.append(found.group(1))
        printed = "".join(output_texts(cell))
        assert f"Exercise {found.group(1)}: passed." in printed, f"{path.name}: the solution of {found.group(1)} must pass its check"
    assert checked == [f"{number}.{k}" for k in range(1, len(exercises) + 1)], f"{path.name}: one check per exercise, in order"


def test_no_machine_paths_or_secrets(notebook):
    path, nb = notebook
    for number, cell in enumerate(nb["cells"], start=1):
        for text in [source(cell), *output_texts(cell)]:
            assert not ABSOLUTE_PATH.search(text), f"{path.name}, cell {number}: absolute path {ABSOLUTE_PATH.search(text).group(0)!r}"
            assert not SECRET.search(text), f"{path.name}, cell {number}: looks like a token or key"


# Numbers the prose may quote although no output prints them: facts from the literature, the data's
# documentation or a library, each with its reason. Everything else quoted must be printed.
PROSE_NUMBERS_ALLOWED = {
    "00_setup.ipynb": {"0.693"},  # ln 2, the loss of guessing between two classes (arithmetic)
    "07_from_hosted_to_open_weights.ipynb": {"16,385"},  # the cookbook's per-example token limit (its constant)
    "08_scaling_out.ipynb": {"4.127"},
    # strict and lenient GSM8K accuracy before and after GRPO in A. Oza's public write-up "GRPO on Qwen2.5-1.5B"
    "09_evaluating_generated_text.ipynb": {"1.7", "48.7", "38.3", "55.0"},  # bits per parameter of NF4 with double quantization (Dettmers et al. 2023)
}


def test_numbers_in_the_prose_are_numbers_the_outputs_print(notebook):
    path, nb = notebook
    printed = output_numbers([text for cell in nb["cells"] for text in output_texts(cell)])
    allowed = PROSE_NUMBERS_ALLOWED.get(path.name, set())
    unprinted = [(number, cell_number) for cell_number, cell in enumerate(nb["cells"], start=1)
                 if cell["cell_type"] == "markdown"
                 for number in prose_numbers(source(cell))
                 if number not in allowed and not is_printed(number, printed)]  # fmt: skip
    assert not unprinted, (
        f"{path.name}: the prose quotes numbers that no output prints (number, cell): {unprinted}. "
        "Print them, say it without the number, or allow them above with the reason."
    )


def test_prose_numbers_are_read_as_intended():
    text = "Accuracy 0.8143 on 1,007 sentences, about 100 of them; `0.5555` in code; gpt-4.1-2025-04-14; 2,000."
    assert prose_numbers(text) == ["0.8143", "1,007"]
    printed = output_numbers(["accuracy 0.81432, n=1007"])
    assert is_printed("0.8143", printed) and is_printed("1,007", printed) and not is_printed("0.8150", printed)


def test_every_ignored_or_tolerant_cell_says_why(notebook):
    path, nb = notebook
    for number, cell in enumerate(nb["cells"], start=1):
        for line in source(cell).splitlines():
            stripped = line.strip()
            if stripped.startswith("# NBVAL_IGNORE_OUTPUT"):
                reason = stripped.removeprefix("# NBVAL_IGNORE_OUTPUT").lstrip(":").strip()
                assert reason, f"{path.name}, cell {number}: say why its output is not compared (# NBVAL_IGNORE_OUTPUT: ...)"


# Every lesson reaches a verdict: the notebook prints it (a line starting "Verdict: ", usually made by
# utils.evaluation.verdict) and the summary quotes it word for word, so prose and numbers cannot drift apart.
NOTEBOOKS_WITHOUT_VERDICTS = {"02_tokenization.ipynb"}  # mechanics only: it compares nothing


def verdict_lines(nb: dict) -> list[str]:
    lines = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "solution" not in cell["metadata"].get("tags", []):
            for text in output_texts(cell):
                lines += [line.strip().removeprefix("Verdict: ") for line in text.splitlines()
                          if line.strip().startswith("Verdict: ")]  # fmt: skip
    return lines


def summary_text(nb: dict) -> str:
    cells = nb["cells"]
    start = next(i for i, cell in enumerate(cells) if "Summary" in headings(cell, 2))
    end = next(i for i, cell in enumerate(cells) if "Exercises" in headings(cell, 2))
    return " ".join(" ".join(source(cell).split()) for cell in cells[start:end] if cell["cell_type"] == "markdown")


def test_the_summary_quotes_every_printed_verdict(notebook):
    path, nb = notebook
    lines = verdict_lines(nb)
    if path.name not in NOTEBOOKS_WITHOUT_VERDICTS:
        assert lines, f"{path.name}: print at least one 'Verdict: ...' line (utils.evaluation.verdict)"
    summary = summary_text(nb)
    missing = [line for line in lines if " ".join(line.split()) not in summary]
    assert not missing, f"{path.name}: the summary must quote every printed verdict word for word; missing: {missing}"


def test_no_prose_that_holds_whatever_the_outcome(notebook):
    path, nb = notebook
    hedge = re.compile(r"(printed above|says whether|to see whether|shows whether|tells whether|whatever the "
                       r"(outcome|result)|the output (says|shows)|read (its|the) interval to)", re.IGNORECASE)
    found = [(number, hedge.search(source(cell)).group(0)) for number, cell in enumerate(nb["cells"], start=1)
             if cell["cell_type"] == "markdown" and hedge.search(source(cell))]  # fmt: skip
    assert not found, f"{path.name}: state the conclusion the numbers support instead of (cell, phrase): {found}"

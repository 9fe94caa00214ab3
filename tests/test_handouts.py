"""Student handouts (utils/handouts.py), checked on the course's own notebooks (nothing is executed)."""

import copy
import hashlib

import nbformat
import pytest

from utils import handouts

NOTEBOOKS = sorted(handouts.NOTEBOOKS_DIR.glob("*.ipynb"))


def digests() -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in NOTEBOOKS}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    before = digests()
    out = tmp_path_factory.mktemp("handouts")
    paths = handouts.write_handouts(NOTEBOOKS, out)
    assert digests() == before, "making handouts must not change the notebooks"
    return {path.name: path for path in paths}


def test_there_is_one_handout_per_notebook_in_a_folder_of_their_own(written):
    assert sorted(written) == [path.name for path in NOTEBOOKS]
    assert all(path.parent != handouts.NOTEBOOKS_DIR for path in written.values())


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_handout_has_no_solution_and_is_a_valid_notebook(written, source):
    handout = nbformat.read(written[source.name], as_version=4)
    nbformat.validate(handout)
    assert not [cell for cell in handout.cells if handouts.is_solution(cell)]
    original = nbformat.read(source, as_version=4)
    solutions = [cell.source for cell in original.cells if handouts.is_solution(cell)]
    assert solutions, f"{source.name} has no solution cells to remove"
    text = "\n".join(cell.source for cell in handout.cells)
    assert not [solution for solution in solutions if solution.strip() in text]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_cells_before_the_exercises_are_unchanged_and_exercises_are_cleared(written, source):
    original = nbformat.read(source, as_version=4)
    handout = nbformat.read(written[source.name], as_version=4)
    start = handouts.exercises_start(original)
    assert start is not None and len(handout.cells) == len(original.cells)
    assert handout.cells[: start + 1] == original.cells[: start + 1]
    assert handout.metadata == original.metadata
    for before, after in zip(original.cells[start + 1 :], handout.cells[start + 1 :]):
        if before.cell_type == "markdown":
            assert after == before
        else:
            assert after.outputs == [] and after.execution_count is None
            assert after.source == ("" if handouts.is_solution(before) else before.source)


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_a_handout_keeps_every_check_cell_so_students_check_their_own_answers(written, source):
    def check_cells(notebook):
        return [cell.source for cell in notebook.cells if cell.source.startswith("check(")]

    handout = nbformat.read(written[source.name], as_version=4)
    assert check_cells(handout) and check_cells(handout) == check_cells(nbformat.read(source, as_version=4))


def tiny_notebook() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    output = nbformat.v4.new_output("stream", text="42\n")
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("print(42)", outputs=[output], execution_count=1),
        nbformat.v4.new_code_cell("answer = 42", metadata={"tags": ["solution"]}, execution_count=2),
        nbformat.v4.new_markdown_cell("## Exercises\n\n### Exercise 1: try"),
        nbformat.v4.new_code_cell("# your turn\nprint(42)", outputs=[output], execution_count=3),
    ]
    return notebook


def test_a_solution_outside_the_exercises_goes_too_and_the_original_stays():
    notebook = tiny_notebook()
    kept = copy.deepcopy(notebook)
    handout = handouts.make_handout(notebook)
    assert [cell.source for cell in handout.cells] == ["# Title", "print(42)", "", "## Exercises\n\n### Exercise 1: try", "# your turn\nprint(42)"]
    assert handout.cells[1].outputs == notebook.cells[1].outputs
    assert handout.cells[4].outputs == [] and handout.cells[4].execution_count is None
    assert notebook == kept, "the notebook passed in is left as it was"


def test_without_an_exercises_section_only_solutions_are_removed():
    notebook = tiny_notebook()
    notebook.cells[3].source = "## Summary"
    handout = handouts.make_handout(notebook)
    assert handout.cells[4].outputs == notebook.cells[4].outputs
    assert handout.cells[2].source == ""


def test_handouts_never_overwrite_the_notebooks(tmp_path):
    path = tmp_path / "00_tiny.ipynb"
    nbformat.write(tiny_notebook(), path)
    stored = path.read_bytes()
    with pytest.raises(ValueError, match="overwrite them"):
        handouts.write_handouts([path], tmp_path)
    assert path.read_bytes() == stored


def test_the_command_writes_handouts_and_reports_bad_input(tmp_path, capsys):
    path = tmp_path / "00_tiny.ipynb"
    nbformat.write(tiny_notebook(), path)
    assert handouts.main([str(path), "--out", str(tmp_path / "out")]) == 0
    assert "Wrote 1 handouts" in capsys.readouterr().out
    assert (tmp_path / "out" / "00_tiny.ipynb").exists()
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    assert handouts.main([str(broken), "--out", str(tmp_path / "out")]) == 1
    assert "ERROR" in capsys.readouterr().err


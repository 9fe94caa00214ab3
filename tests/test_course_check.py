"""The readiness check (utils/course_check.py), on tiny notebooks: a few seconds, no course notebook runs."""

import datetime
import hashlib
import os

import nbformat
import pytest

from utils import course_check
from utils.course_check import Headline, NotebookResult, build_report

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    book = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC})
    book.cells = list(cells)
    return book


def stream(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", text=text)


def passing() -> nbformat.NotebookNode:
    return notebook(
        nbformat.v4.new_markdown_cell("# A tiny notebook"),
        nbformat.v4.new_code_cell("import os\nloss = 0.5 + 0.1932\nprint(f'loss: {loss:.4f}')", metadata={"tags": ["headline"]},
                                  outputs=[stream("loss: 0.6931\n")], execution_count=1),
        nbformat.v4.new_code_cell("print(os.path.basename(os.environ['COURSE_OUTPUT_DIR']).startswith('course-check-outputs-'))"),
    )  # fmt: skip


def failing() -> nbformat.NotebookNode:
    return notebook(
        nbformat.v4.new_code_cell("ratio = 1"),
        nbformat.v4.new_code_cell("ratio / 0"),
        nbformat.v4.new_code_cell("print('after')", outputs=[stream("after\n")], execution_count=3),
    )


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("check")
    paths = [folder / "00_passing.ipynb", folder / "01_failing.ipynb"]
    nbformat.write(passing(), paths[0])
    nbformat.write(failing(), paths[1])
    stored = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
    before = os.environ.get("COURSE_OUTPUT_DIR")
    code = course_check.main([str(path) for path in paths] + ["--report-dir", str(folder / "report")])
    assert os.environ.get("COURSE_OUTPUT_DIR") == before, "the check restores COURSE_OUTPUT_DIR"
    assert {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths} == stored, "notebooks stay as stored"
    return code, folder / "report"


def test_a_notebook_with_an_error_fails_the_check_but_the_others_still_run(checked):
    code, report_dir = checked
    assert code == 1
    report = (report_dir / "report.md").read_text()
    assert "**1 of 2 notebooks failed**: 01_failing.ipynb" in report
    assert "| 00_passing.ipynb | ok |" in report
    assert "| 01_failing.ipynb | error in cell 2: ZeroDivisionError: division by zero |" in report
    assert (report_dir / "report.png").read_bytes().startswith(b"\x89PNG")


def test_the_report_says_where_it_ran_and_how_much_memory_each_kernel_needed(checked):
    report = (checked[1] / "report.md").read_text()
    assert "- device: cpu" in report and "- precision: fp32" in report and "- versions: python" in report
    rows = [line for line in report.splitlines() if line.startswith("| 0")]
    for row in rows:
        peak_ram = row.split("|")[4].strip()
        assert peak_ram != "n/a" and float(peak_ram.replace(",", "")) > 0


def test_headline_cells_show_the_stored_output_next_to_this_machines(checked):
    report = (checked[1] / "report.md").read_text()
    stored_at, here_at = report.index("Stored (CPU reference):"), report.index("This machine:")
    assert "### 00_passing.ipynb, cell 2" in report
    assert stored_at < report.index("loss: 0.6931") < here_at < report.index("loss: 0.6932")


def test_executed_copies_are_kept_and_cells_after_an_error_show_no_stale_output(checked):
    executed = nbformat.read(checked[1] / "executed" / "01_failing.ipynb", as_version=4)
    assert executed.cells[1].outputs[0].output_type == "error"
    assert executed.cells[2].outputs == [] and executed.cells[2].execution_count is None
    passed = nbformat.read(checked[1] / "executed" / "00_passing.ipynb", as_version=4)
    assert course_check.output_text(passed.cells[2]) == "True", "what notebooks save goes to a temporary folder"


def result(name: str, **fields) -> NotebookResult:
    return NotebookResult(name=name, seconds=fields.pop("seconds", 30.0), **fields)


def test_without_headline_tags_the_report_says_so():
    report = build_report([result("00_a.ipynb", peak_ram_mb=1500.0)], datetime.datetime(2026, 1, 2, 3, 4))
    assert "No cells are tagged `headline`" in report
    assert "All 1 notebooks ran without errors in 30 s. The largest peak memory of a notebook's kernel was 1.5 GiB." in report
    assert "Device and precision could not be read" in report


def test_times_memory_and_headlines_are_formatted_for_reading():
    results = [
        result("00_a.ipynb", seconds=754.0, peak_ram_mb=5123.4, peak_gpu_mb=812.0, headlines=[Headline(7, "0.91", "")]),
        result("01_b.ipynb", error="cell 3: the kernel died (often: out of memory)"),
    ]
    report = build_report(results, datetime.datetime(2026, 1, 2, 3, 4), plot_name=None)
    assert "| 00_a.ipynb | ok | 12.6 min | 5,123 | 812 |" in report
    assert "| 01_b.ipynb | error in cell 3: the kernel died (often: out of memory) | 30 s | n/a | n/a |" in report
    assert "(no output)" in report and "report.png" not in report


def test_output_text_reads_streams_results_and_errors():
    cell = nbformat.v4.new_code_cell("x", outputs=[
        stream("printed\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "42", "text/html": "<b>42</b>"}, execution_count=1),
        nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[]),
    ])  # fmt: skip
    assert course_check.output_text(cell) == "printed\n42\nValueError: bad"


def test_the_exit_code_is_zero_when_every_notebook_ran(monkeypatch, tmp_path):
    monkeypatch.setattr(course_check, "check", lambda notebooks, report_dir, timeout: [result("00_a.ipynb")])
    assert course_check.main([str(tmp_path / "00_a.ipynb")]) == 0


def test_cells_that_print_a_verdict_are_headlines_too():
    notebook = nbformat.v4.new_notebook()
    printed = nbformat.v4.new_output("stream", name="stdout", text="n=5\nVerdict: a minus b: +0.100 [+0.050, +0.150] -> better\n")
    verdict_cell = nbformat.v4.new_code_cell("print(...)", outputs=[printed])
    solution = nbformat.v4.new_code_cell("print(...)", outputs=[printed], metadata={"tags": ["solution"]})
    plain = nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")])
    tagged = nbformat.v4.new_code_cell("x", metadata={"tags": ["headline"]})
    notebook.cells = [nbformat.v4.new_markdown_cell("Verdict: prose is not output"), verdict_cell, plain, tagged, solution]
    assert course_check.headline_cells(notebook) == [1, 3]

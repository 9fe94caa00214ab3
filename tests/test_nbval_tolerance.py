"""The tolerant output comparison that the test command adds to nbval (tests/nbval_tolerance.py)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nbval_tolerance import (
    DEFAULT_TOLERANCE,
    Tolerance,
    ToleranceMarkerError,
    compare_texts,
    last_digit_unit,
    reference_environment,
    tokenize,
    tolerance_of_cell,
)

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize(
    "stored, fresh",
    [
        ("log p(' negative') = -4.4012", "log p(' negative') = -4.4011"),  # seen between two CPU types
        ("validation loss 1.153", "validation loss 1.154"),
        ("perplexity 66.25", "perplexity 66.24"),
        ("a loss of 3.592e+06", "a loss of 3.593e+06"),
        ("-0.0000", "0.0000"),
        ("ends with 0.716.", "ends with 0.717."),
    ],
)
def test_one_unit_in_the_last_printed_digit_passes(stored, fresh):
    assert compare_texts(stored, fresh) is None


@pytest.mark.parametrize(
    "stored, fresh, expected",
    [
        ("loss 2.4752", "loss 2.4755", "number 2.4752 on line 1 ('loss 2.4752'): got 2.4755, which differs by 0.0003"),
        ("accuracy 0.716", "accuracy 0.720", "differs by 0.004, more than the tolerance 0.001 (one unit"),
        ("174 mistakes", "175 mistakes", "differs by 1, more than the tolerance 0 (integers must be equal)"),
    ],
)
def test_numbers_beyond_the_tolerance_fail_with_the_number_the_difference_and_the_tolerance(stored, fresh, expected):
    mismatch = compare_texts(stored, fresh)
    assert mismatch is not None and expected in mismatch.message


@pytest.mark.parametrize(
    "stored, fresh",
    [
        ("prediction: positive", "prediction: negative"),
        ("torch 2.13.0+cpu", "torch 2.14.0+cpu"),  # versions are text, not numbers
        ("SmolLM2-135M", "SmolLM3-135M"),  # digits inside words are text
        ("a b", "ab"),
        ("one line\ntwo lines", "one line two lines"),
        ("0.5 and more", "0.5"),
        ("1.0", "1.0 extra"),
    ],
)
def test_text_that_is_not_a_number_is_compared_exactly(stored, fresh):
    assert compare_texts(stored, fresh) is not None


def test_column_widths_may_change_with_the_numbers_in_them():
    stored = "            accuracy  loss\nrun one        0.716  1.124\nrun two        0.720  0.980"
    fresh = "            accuracy   loss\nrun one       0.7161  1.124\nrun two       0.7200  0.9801"
    assert compare_texts(stored, fresh) is None


def test_the_coarser_of_two_printings_sets_the_unit():
    # pandas drops trailing zeros column-wise, so 0.7160 may print as 0.716 on one machine
    assert compare_texts("0.716", "0.7164") is None
    assert compare_texts("0.716", "0.7180") is not None


def test_units_of_the_last_digit():
    assert last_digit_unit("0.716") == pytest.approx(1e-3)
    assert last_digit_unit("-4.4012") == pytest.approx(1e-4)
    assert last_digit_unit("1.5e-05") == pytest.approx(1e-6)
    assert last_digit_unit("3.592e+06") == pytest.approx(1e3)
    assert last_digit_unit("42") == 1


def test_numbers_are_found_where_they_stand_alone():
    kinds = [(t.kind, t.text) for t in tokenize("r=8 q_proj 1e-05 [-0.0750, +0.0650] v2.13.0") if t.kind != "space"]
    numbers = [text for kind, text in kinds if kind == "number"]
    assert numbers == ["8", "1e-05", "-0.0750", "+0.0650"]


def test_a_cell_can_declare_a_wider_tolerance_with_its_reason():
    source = "# NBVAL_TOLERANCE abs=0.02 int=3: 96 training steps; spread measured across CPUs\nrun()"
    tolerance = tolerance_of_cell(source)
    assert tolerance == Tolerance(absolute=0.02, integer=3, reason="96 training steps; spread measured across CPUs")
    assert compare_texts("accuracy 0.716, 174 mistakes", "accuracy 0.732, 176 mistakes", tolerance) is None
    mismatch = compare_texts("accuracy 0.716", "accuracy 0.740", tolerance)
    assert "more than the tolerance 0.02 (declared by the cell: 96 training steps" in mismatch.message
    assert compare_texts("perplexity 66.25", "perplexity 66.80", tolerance_of_cell("# NBVAL_TOLERANCE rel=0.01: x")) is None


def test_cells_without_a_marker_get_the_default():
    assert tolerance_of_cell("print(1)  # NBVAL_TOLERANCE is explained in tests/") == DEFAULT_TOLERANCE


@pytest.mark.parametrize(
    "source, message",
    [
        ("# NBVAL_TOLERANCE abs=0.02", "needs a reason"),
        ("# NBVAL_TOLERANCE abs=0.02:   ", "needs a reason"),
        ("# NBVAL_TOLERANCE: because", "at least one of"),
        ("# NBVAL_TOLERANCE absolute=0.1: because", "cannot read 'absolute=0.1'"),
        ("# NBVAL_TOLERANCE int=1.5: because", "whole number"),
        ("# NBVAL_TOLERANCE abs=1: a\n# NBVAL_TOLERANCE abs=2: b", "only once"),
    ],
)
def test_a_marker_that_cannot_be_used_is_an_error(source, message):
    with pytest.raises(ToleranceMarkerError, match=message):
        tolerance_of_cell(source)


def test_the_reference_environment_is_the_cpu_with_one_thread(monkeypatch):
    monkeypatch.delenv("COURSE_TEST_THREADS", raising=False)
    environment = reference_environment()
    assert environment["COURSE_DEVICE"] == "cpu"
    assert environment["OMP_NUM_THREADS"] == environment["MKL_NUM_THREADS"] == "1"
    monkeypatch.setenv("COURSE_TEST_THREADS", "2")
    assert reference_environment()["OMP_NUM_THREADS"] == "2"


# ----------------------------------------------------------- through nbval itself


def notebook_with(source: str, stored_output: str) -> dict:
    cell = {"cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {}, "source": source,
            "outputs": [{"name": "stdout", "output_type": "stream", "text": stored_output}]}  # fmt: skip
    return {"cells": [cell], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
            "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip


def run_nbval(tmp_path: Path, source: str, stored_output: str) -> subprocess.CompletedProcess:
    (tmp_path / "check.ipynb").write_text(json.dumps(notebook_with(source, stored_output)))
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import nbval_tolerance
        def pytest_configure(config):
            nbval_tolerance.install()
    """))  # fmt: skip
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    command = [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "no:cacheprovider",
               "-p", "no:xdist", "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"), "check.ipynb"]  # fmt: skip
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


def test_nbval_accepts_float_noise_and_reports_a_real_difference(tmp_path):
    passing = run_nbval(tmp_path, "print('loss', 2.4753)", "loss 2.4752\n")
    assert passing.returncode == 0, passing.stdout[-2000:]
    failing = run_nbval(tmp_path, "print('loss', 2.4759)", "loss 2.4752\n")
    assert failing.returncode == 1
    assert "number 2.4752 on line 1 ('loss 2.4752'): got 2.4759, which differs by 0.0007" in failing.stdout


def test_an_ignored_cell_may_say_why_on_the_marker_line(tmp_path):
    source = "# NBVAL_IGNORE_OUTPUT: run time and memory depend on the machine\nprint('peak memory 3191 MiB')"
    passing = run_nbval(tmp_path, source, "peak memory 3174 MiB\n")
    assert passing.returncode == 0, passing.stdout[-2000:]
    compared = run_nbval(tmp_path, "# a comment that names no marker: 1\nprint('peak memory 3191 MiB')",
                         "peak memory 3174 MiB\n")  # fmt: skip
    assert compared.returncode == 1

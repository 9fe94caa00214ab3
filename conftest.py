"""pytest set-up for the whole course: the notebooks' numeric environment and the tolerant
comparison of their outputs (tests/nbval_tolerance.py explains both)."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))

import nbval_tolerance

# Before any kernel starts and before torch is imported: nbval's kernels inherit this.
os.environ.update(nbval_tolerance.reference_environment())
# Test runs write checkpoints and models into a folder of their own, never into the
# notebooks' outputs/ folder, where a learner's own runs keep theirs.
os.environ["COURSE_OUTPUT_DIR"] = tempfile.mkdtemp(prefix="course-test-outputs-")

# The longest notebooks first (by their measured time), then the unit tests, so that parallel
# workers finish at about the same time; `--no-loadscope-reorder` keeps pytest-xdist to this order.
HEAVIEST_FIRST = ("05", "06", "10", "07", "04", "09", "03", "01", "08", "02", "00")
GIB = 2**30
MEMORY_PER_WORKER = 6 * GIB  # notebook 06 peaks near 5 GiB


def pytest_configure(config):
    nbval_tolerance.install()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core, as many as the memory allows (at most one per notebook)."""
    import psutil

    by_memory = max(1, psutil.virtual_memory().available // MEMORY_PER_WORKER)
    return int(max(1, min(os.cpu_count() or 1, by_memory, len(HEAVIEST_FIRST))))


def _cost_rank(item) -> tuple[int, str]:
    path = Path(str(item.fspath))
    if path.suffix != ".ipynb":
        return len(HEAVIEST_FIRST), str(path)
    prefix = path.name[:2]
    return (HEAVIEST_FIRST.index(prefix) if prefix in HEAVIEST_FIRST else 0), str(path)


def pytest_collection_modifyitems(config, items):
    # A stable sort: the cells of each notebook stay in order.
    items.sort(key=_cost_rank)

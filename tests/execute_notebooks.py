"""Run notebooks top to bottom and store their outputs, in the environment the tests check them in.

    python tests/execute_notebooks.py notebooks/03_training_loop.ipynb [...]   (or: make execute)

Every code cell runs once, in order, in a fresh kernel started in notebooks/, with the
reference environment of tests/nbval_tolerance.py (CPU, one torch thread). Notebooks run
side by side, one per core, as the test command runs them. The notebook files are
rewritten in place with their new outputs; what they save goes to notebooks/outputs/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbval_tolerance import reference_environment

CELL_TIMEOUT_S = 1800


def execute(path: str) -> tuple[str, float]:
    """Execute one notebook in place; return its name and wall time in seconds."""
    notebook_path = Path(path).resolve()
    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook_path.parent)}})  # fmt: skip
    start = time.perf_counter()
    client.execute()
    nbformat.write(notebook, notebook_path)
    return notebook_path.name, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--workers", type=int, default=min(len(os.sched_getaffinity(0)), 4))
    arguments = parser.parse_args()
    os.environ.update(reference_environment())
    os.environ.pop("COURSE_OUTPUT_DIR", None)  # stored outputs name the default folder, outputs/
    with ProcessPoolExecutor(max_workers=max(1, arguments.workers)) as pool:
        for name, seconds in pool.map(execute, arguments.notebooks):
            print(f"{name}: executed in {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

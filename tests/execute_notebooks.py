"""Run notebooks top to bottom and store their outputs, in the environment the tests check them in.

    python tests/execute_notebooks.py notebooks/03_training_loop.ipynb [...]   (or: make execute)

Every code cell runs once, in order, in a fresh kernel started in notebooks/, with the
reference environment of tests/nbval_tolerance.py (CPU, one torch thread). Notebooks run
side by side, one per core, as the test command runs them. The notebook files are
rewritten in place with their new outputs; what they save goes to notebooks/outputs/.

With ``--copy-to FOLDER`` the executed notebooks are written there instead, the stored
ones are left alone: run them once more with the numeric environment changed (e.g.
COURSE_TEST_THREADS=2, or ATEN_CPU_CAPABILITY=avx2) and compare with
tests/compare_outputs.py to measure how far each printed number moves.
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


def execute(path: str, copy_to: str | None = None) -> tuple[str, float]:
    """Execute one notebook (in place, or into ``copy_to``); return its name and wall time in seconds."""
    notebook_path = Path(path).resolve()
    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook_path.parent)}})  # fmt: skip
    start = time.perf_counter()
    try:
        client.execute()
    finally:  # a failed run is stored too, so its error can be read in the notebook
        nbformat.write(notebook, Path(copy_to) / notebook_path.name if copy_to else notebook_path)
    return notebook_path.name, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--workers", type=int, default=min(len(os.sched_getaffinity(0)), 4))
    parser.add_argument("--copy-to", help="write the executed notebooks into this folder instead of in place")
    arguments = parser.parse_args()
    os.environ.update(reference_environment())
    os.environ.pop("COURSE_OUTPUT_DIR", None)  # stored outputs name the default folder, outputs/
    with ProcessPoolExecutor(max_workers=max(1, arguments.workers)) as pool:
        if arguments.copy_to:
            Path(arguments.copy_to).mkdir(parents=True, exist_ok=True)
        runs = pool.map(execute, arguments.notebooks, [arguments.copy_to] * len(arguments.notebooks))
        for name, seconds in runs:
            print(f"{name}: executed in {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The classroom and Colab readiness check: run every notebook here, report time, memory and errors.

    python -m utils.course_check                 (or: make check)
    python -m utils.course_check notebooks/03_training_loop.ipynb --report-dir check-report

Each notebook runs top to bottom in a fresh kernel started in its own folder, with this
machine's own settings: a GPU if there is one and the precision it supports, all CPU threads.
Nothing is written back to the notebooks; the executed copies go to the report folder, and
what the notebooks save (checkpoints, models) to a temporary folder that is deleted afterwards.

The report (``report.md`` and ``report.png`` in the report folder) gives the device and
precision, each notebook's wall time and peak memory, the first error if there was one, and
the output of every cell tagged ``headline`` next to the output stored in the notebook (made
on a CPU). The command fails only if a notebook raised an error, ran out of time or killed its kernel.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
HEADLINE_TAG = "headline"
VERDICT_PREFIX = "Verdict: "  # the lines utils.evaluation.verdict prints
CELL_TIMEOUT_S = 1800
MIB_PER_GIB = 1024

# Run in each notebook's kernel after its last cell: where it ran, and the memory it needed.
PROBE = """\
import json
import torch
from utils.environment import describe_environment, machine_report, peak_memory_mb, versions_report
probe = {"environment": {**describe_environment(), **machine_report()}, "versions": versions_report()}
probe["peak_ram_mb"] = peak_memory_mb("cpu")
probe["peak_gpu_mb"] = peak_memory_mb("cuda") if torch.cuda.is_available() else None
print(json.dumps(probe))"""


@dataclass
class Headline:
    """A cell tagged ``headline``: what the stored notebook shows, and what it printed here."""

    cell: int  # 1-based position among the notebook's cells
    stored: str
    here: str


@dataclass
class NotebookResult:
    """How one notebook went."""

    name: str
    seconds: float
    error: str | None = None  # "cell 12: ZeroDivisionError: division by zero"
    peak_ram_mb: float | None = None  # the kernel process's resident-memory high-water mark
    peak_gpu_mb: float | None = None  # the most GPU memory torch allocated
    headlines: list[Headline] = field(default_factory=list)
    probe: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- outputs


def output_text(cell: nbformat.NotebookNode) -> str:
    """The text a code cell shows: printed streams, results' plain text, and errors."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "".join(part if part.endswith("\n") else part + "\n" for part in parts if part).rstrip("\n")


def headline_cells(notebook: nbformat.NotebookNode) -> list[int]:
    """Indices of the cells tagged ``headline``, and of the code cells whose stored output prints a verdict
    (a line starting ``Verdict: ``); exercise solutions excepted."""
    return [i for i, cell in enumerate(notebook.cells) if _is_headline(cell)]


def _is_headline(cell: nbformat.NotebookNode) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    if HEADLINE_TAG in tags:
        return True
    prints_verdict = any(line.startswith(VERDICT_PREFIX) for line in output_text(cell).splitlines())
    return cell.get("cell_type") == "code" and "solution" not in tags and prints_verdict


def first_error(notebook: nbformat.NotebookNode) -> str | None:
    """``"cell N: Name: message"`` for the first cell with an error output, or None."""
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                return f"cell {index + 1}: {output.ename}: {output.evalue}"
    return None


# ------------------------------------------------------------------------- execution


def _clear_from(notebook: nbformat.NotebookNode, index: int) -> None:
    """Clear the stored outputs of the cells that did not run, so the executed copy does not mislead."""
    for cell in notebook.cells[index:]:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None


def _execute_cells(client: NotebookClient, notebook: nbformat.NotebookNode) -> str | None:
    """Run every cell in order; stop at the first failure and describe it (None if all ran)."""
    for index, cell in enumerate(notebook.cells):
        try:
            client.execute_cell(cell, index)
        except CellExecutionError:
            error = first_error(notebook) or f"cell {index + 1}: an error"
        except CellTimeoutError:
            error = f"cell {index + 1}: still running after {client.timeout} s (the time limit)"
        except DeadKernelError:
            error = f"cell {index + 1}: the kernel died (often: out of memory)"
        else:
            continue
        _clear_from(notebook, index + 1)
        return error
    return None


def _probe(client: NotebookClient, notebook: nbformat.NotebookNode) -> dict:
    """Run PROBE in the notebook's kernel, as one more cell; an empty dict if it cannot run there."""
    cell = nbformat.v4.new_code_cell(PROBE)
    notebook.cells.append(cell)
    try:
        client.execute_cell(cell, len(notebook.cells) - 1)
        return json.loads(output_text(cell).splitlines()[-1])
    except (CellExecutionError, CellTimeoutError, DeadKernelError, ValueError, IndexError):
        return {}
    finally:
        notebook.cells.pop()


def run_notebook(path: Path, timeout_s: int = CELL_TIMEOUT_S) -> tuple[NotebookResult, nbformat.NotebookNode]:
    """Execute a copy of the notebook at ``path`` in a fresh kernel; return the result and the executed copy."""
    stored = nbformat.read(path, as_version=4)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout_s, resources={"metadata": {"path": str(Path(path).parent)}})
    with client.setup_kernel():
        start = time.perf_counter()
        error = _execute_cells(client, notebook)
        seconds = time.perf_counter() - start
        probe = _probe(client, notebook) if "kernel died" not in (error or "") else {}
    headlines = [Headline(i + 1, output_text(stored.cells[i]), output_text(notebook.cells[i])) for i in headline_cells(stored)]
    result = NotebookResult(
        name=Path(path).name, seconds=seconds, error=error, headlines=headlines, probe=probe,
        peak_ram_mb=probe.get("peak_ram_mb"), peak_gpu_mb=probe.get("peak_gpu_mb"),
    )  # fmt: skip
    return result, notebook


# ---------------------------------------------------------------------------- report


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 100 else f"{seconds / 60:.1f} min"


def _environment_lines(results: list[NotebookResult]) -> list[str]:
    probe = next((r.probe for r in results if r.probe), {})
    if not probe:
        return ["Device and precision could not be read (no notebook's kernel could import `utils`)."]
    lines = [f"- {name}: {value}" for name, value in probe.get("environment", {}).items()]
    versions = ", ".join(f"{name} {version}" for name, version in probe.get("versions", {}).items())
    return [*lines, f"- versions: {versions}"]


def _summary(results: list[NotebookResult]) -> str:
    failed = [r.name for r in results if r.error]
    total = _duration(sum(r.seconds for r in results))
    peaks = [r.peak_ram_mb for r in results if r.peak_ram_mb is not None]
    peak = f" The largest peak memory of a notebook's kernel was {max(peaks) / MIB_PER_GIB:.1f} GiB." if peaks else ""
    if failed:
        return f"**{len(failed)} of {len(results)} notebooks failed**: {', '.join(failed)}. Time in all: {total}.{peak}"
    return f"All {len(results)} notebooks ran without errors in {total}.{peak}"


def _results_table(results: list[NotebookResult]) -> list[str]:
    lines = ["| notebook | result | wall time | peak RAM (MiB) | peak GPU memory (MiB) |", "|---|---|---:|---:|---:|"]
    for r in results:
        status = f"error in {r.error}" if r.error else "ok"
        lines.append(f"| {r.name} | {status} | {_duration(r.seconds)} | {_mib(r.peak_ram_mb)} | {_mib(r.peak_gpu_mb)} |")
    return lines


def _headline_lines(results: list[NotebookResult]) -> list[str]:
    if not any(r.headlines for r in results):
        return [f"No cells are tagged `{HEADLINE_TAG}` in these notebooks, so there are no numbers to compare."]
    lines = ["The output stored in each notebook was made on a CPU; a GPU, another CPU or other versions", "change the last digits.", ""]
    for r in results:
        for headline in r.headlines:
            lines += [f"### {r.name}, cell {headline.cell}", "", "Stored (CPU reference):", "", "```", headline.stored or "(no output)", "```", ""]
            lines += ["This machine:", "", "```", headline.here or "(no output)", "```", ""]
    return lines


def build_report(results: list[NotebookResult], started: datetime.datetime, plot_name: str | None = "report.png") -> str:
    """The Markdown report of a check."""
    lines = ["# Course check", "", f"Run {started:%Y-%m-%d %H:%M}. {_summary(results)}", "", "## Where it ran", ""]
    lines += [*_environment_lines(results), "", "## Notebooks", "", *_results_table(results), ""]
    if plot_name:
        lines += [f"![wall time and peak memory per notebook]({plot_name})", ""]
    lines += ["Peak RAM is the high-water mark of the notebook's kernel process; peak GPU memory is what", "torch allocated at most.", ""]
    lines += ["## Headline numbers", "", *_headline_lines(results)]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot_results(results: list[NotebookResult], path: Path) -> None:
    """Bar charts of wall time and peak memory per notebook, saved as a PNG."""
    from matplotlib.figure import Figure

    names = [r.name.removesuffix(".ipynb") for r in results]
    figure = Figure(figsize=(11, 0.5 * len(results) + 1.8), layout="constrained")
    time_axes, memory_axes = figure.subplots(1, 2, sharey=True)
    time_axes.barh(names, [r.seconds / 60 for r in results], color=["tab:red" if r.error else "tab:blue" for r in results])
    time_axes.set_xlabel("wall time (min); red: failed")
    time_axes.invert_yaxis()
    memory_axes.barh(names, [(r.peak_ram_mb or 0) / MIB_PER_GIB for r in results], label="RAM (kernel)")
    if any(r.peak_gpu_mb for r in results):
        memory_axes.barh(names, [(r.peak_gpu_mb or 0) / MIB_PER_GIB for r in results], height=0.4, label="GPU (torch)")
    environment = next((r.probe.get("environment", {}) for r in results if r.probe), {})
    for key, label, style in (("memory (GiB)", "this machine's RAM", "--"), ("gpu memory (GiB)", "its GPU memory", ":")):
        if key in environment:
            memory_axes.axvline(float(environment[key]), color="black", linestyle=style, label=label)
    memory_axes.set_xlabel("peak memory (GiB)")
    memory_axes.legend(loc="lower right")
    figure.savefig(path, dpi=110)


def check(notebooks: list[Path], report_dir: Path, timeout_s: int = CELL_TIMEOUT_S) -> list[NotebookResult]:
    """Run the notebooks one after another and write the report; return the results."""
    started = datetime.datetime.now()
    executed_dir = report_dir / "executed"
    executed_dir.mkdir(parents=True, exist_ok=True)
    results = []
    previous = os.environ.get("COURSE_OUTPUT_DIR")
    with tempfile.TemporaryDirectory(prefix="course-check-outputs-") as outputs:
        os.environ["COURSE_OUTPUT_DIR"] = outputs  # the kernels inherit it
        try:
            for path in notebooks:
                print(f"{Path(path).name} ...", end=" ", flush=True)
                result, executed = run_notebook(Path(path), timeout_s)
                nbformat.write(executed, executed_dir / Path(path).name)
                print(f"{'error' if result.error else 'ok'} in {result.seconds:.0f} s", flush=True)
                results.append(result)
        finally:
            if previous is None:
                os.environ.pop("COURSE_OUTPUT_DIR", None)
            else:
                os.environ["COURSE_OUTPUT_DIR"] = previous
    plot_results(results, report_dir / "report.png")
    (report_dir / "report.md").write_text(build_report(results, started), encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    """Check the given notebooks (all of the course's by default); 1 if any raised an error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook of the course")
    parser.add_argument("--report-dir", type=Path, default=Path("check-report"), help="where the report goes (default: check-report)")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds a cell may run (default: %(default)s)")
    arguments = parser.parse_args(argv)
    notebooks = arguments.notebooks or sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    if not notebooks:
        print(f"ERROR: no notebooks found in {NOTEBOOKS_DIR}", file=sys.stderr)
        return 1
    results = check(notebooks, arguments.report_dir, arguments.timeout)
    print(f"{_summary(results)} Report: {arguments.report_dir / 'report.md'}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

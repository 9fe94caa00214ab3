"""JupyterLab in a real browser: start it as `make lab` does, run notebook 00 through the UI."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "00_setup.ipynb"
CHROMIUM = shutil.which("chromium")  # Debian's package; .ci/run installs it
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
IN_CI = os.environ.get("CI", "").lower() == "true"
SLOW_TESTS = IN_CI or os.environ.get("COURSE_SLOW_TESTS") == "1"
RUN_TIMEOUT_MS = 600_000
KERNEL_CHECK = "import sys\nprint('kernel prefix:', sys.prefix)"

slow = pytest.mark.skipif(not SLOW_TESTS, reason="slow (about a minute): runs in CI, or with COURSE_SLOW_TESTS=1")


def test_the_lab_command_is_the_one_this_test_starts():
    recipe = re.search(r"^lab: assets\n\t(.+)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE).group(1)
    assert recipe == "$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lab_command(root_dir: Path, port: int, token: str) -> list[str]:
    """`make lab LAB_ARGS="--no-browser --port P --IdentityProvider.token=T"`, with another root folder."""
    root_flag = ["--allow-root"] if os.geteuid() == 0 else []
    jupyter = str(Path(sys.executable).parent / "jupyter")
    options = ["--no-browser", f"--port={port}", f"--IdentityProvider.token={token}"]
    return [jupyter, "lab", f"--ServerApp.root_dir={root_dir}", *root_flag, *options]


def wait_for_server(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a copy of notebook 00 (autosave must never touch the stored notebook)."""
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy2(NOTEBOOK, root / NOTEBOOK.name)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces")}
    log = tmp_path / "jupyterlab.log"
    with open(log, "w") as sink:
        server = subprocess.Popen(lab_command(root, port, token), cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", server, log)
        yield f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}?token={token}", root / NOTEBOOK.name
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        message = "Chromium is missing: `apt-get install chromium` (.ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def dismiss_news_popup(page) -> None:
    """JupyterLab asks once whether to fetch Jupyter news; answer No if it asks."""
    question = page.get_by_text("official Jupyter news")
    try:
        question.wait_for(timeout=5_000)
    except Exception:  # noqa: BLE001 (playwright's TimeoutError: the question did not come)
        return
    page.locator(".jp-toast-button", has_text="No").click()


# The status bar reads "Python 3 (ipykernel) | Idle" once a kernel is connected and idle
# ("No Kernel | Initializing" before: running cells then would ask which kernel to start).
KERNEL_IDLE = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(
    item => /\\| Idle$/.test(item.textContent.trim()) && !item.textContent.startsWith('No Kernel'))"""
NOTHING_QUEUED = "() => ![...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'))"
SOMETHING_QUEUED = "() => [...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'))"


def wait_until_idle(page) -> None:
    """The kernel is connected and idle, and no cell is queued or running (their prompts show [*])."""
    page.wait_for_function(NOTHING_QUEUED, timeout=RUN_TIMEOUT_MS)
    page.wait_for_function(KERNEL_IDLE, timeout=RUN_TIMEOUT_MS)


def kernel_status(page) -> str:
    return next(text for text in page.locator(".jp-StatusBar-TextItem").all_inner_texts() if "| Idle" in text)


def run_all_cells(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
    page.wait_for_function(SOMETHING_QUEUED)
    wait_until_idle(page)


def add_and_run_cell(page, source: str) -> str:
    """Append a code cell after the last one, run it, and return what it printed."""
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.type(source)
    page.keyboard.press("Control+Enter")  # run it, stay on it
    wait_until_idle(page)
    return page.locator(".jp-Notebook .jp-CodeCell").last.locator(".jp-OutputArea-output").inner_text()


def save(page) -> None:
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)


@slow
def test_notebook_00_runs_in_jupyterlab_in_a_browser(lab, browser, tmp_path):
    url, copy = lab
    stored = hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    try:
        page.goto(url)
        page.wait_for_selector(".jp-Notebook .jp-CodeCell")
        dismiss_news_popup(page)
        wait_until_idle(page)
        run_all_cells(page)
        printed = add_and_run_cell(page, KERNEL_CHECK)
        save(page)
        status = kernel_status(page)
    finally:
        page.screenshot(path=str(tmp_path / "jupyterlab.png"), full_page=True)
    assert f"kernel prefix: {sys.prefix}" in printed, "the kernel must be the course's environment"
    assert status.startswith("Python 3"), status
    executed = nbformat.read(copy, as_version=4)
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code, start=1):
        assert cell.execution_count is not None, f"code cell {number} did not run"
        errors = [output for output in cell.outputs if output.output_type == "error"]
        assert not errors, f"code cell {number}: {errors[0].ename}: {errors[0].evalue}"
    assert len(code) == sum(cell.cell_type == "code" for cell in nbformat.read(NOTEBOOK, as_version=4).cells) + 1
    assert code[-1].execution_count == len(code), "the kernel check must come after every cell ran once in this kernel"
    assert hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest() == stored, "the stored notebook must stay as it is"

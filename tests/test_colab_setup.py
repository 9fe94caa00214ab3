"""The notebooks' Colab set-up (utils/colab.py): its version logic, and a simulation of what
its first cell does to Colab's published runtime (tests/colab/README.md says how faithful it is)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from packaging.requirements import Requirement as PackagingRequirement
from packaging.specifiers import Specifier
from packaging.version import Version as PackagingVersion

from utils import colab
from utils.colab import SetupError, make_plan, parse_requirement, parse_version, read_requirements

ROOT = Path(__file__).resolve().parent.parent
COLAB_FREEZE = ROOT / "tests" / "colab" / "pip-freeze.gpu.txt"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

SLOW_TESTS = os.environ.get("CI", "").lower() == "true" or os.environ.get("COURSE_SLOW_TESTS") == "1"
slow = pytest.mark.skipif(not SLOW_TESTS, reason="slow (about a minute): runs in CI, or with COURSE_SLOW_TESTS=1")

# The requirements of the real google-colab distribution, from setup.py of googlecolab/colabtools.
COLABTOOLS_REQUIRES = [
    "google-auth==2.38.0", "ipykernel==6.17.1", "ipyparallel==8.8.0", "ipython==7.34.0", "notebook==6.5.7",
    "pandas==2.2.2", "portpicker==1.5.2", "requests==2.32.3", "tornado==6.5.1",
]  # fmt: skip
# What the issue names as untouchable, checked by name in the simulation.
UNTOUCHABLE = ("torch", "numpy", "ipykernel", "jupyter-client", "tornado", "notebook", "ipywidgets", "widgetsnbextension")
DEVELOPMENT_TOOLS = ("jupyterlab", "nbval", "pytest-xdist", "ruff", "playwright")


def colab_versions() -> dict[str, str]:
    """Normalized name -> version of every package in Colab's published freeze (URL installs left out)."""
    versions = {}
    for line in COLAB_FREEZE.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==", 1)
            versions[colab.normalize(name)] = version
    return versions


# ------------------------------------------------------------------ versions and ranges

VERSIONS = [
    "0.9", "1.0.dev0", "1.0a1.dev1", "1.0a1", "1.0a1.post1", "1.0b2", "1.0rc1", "1.0c2", "1.0", "1.0.0",
    "1.0+local", "1.0.post1.dev3", "1.0.post1", "1.0-2", "1.0.1", "1.1.dev0", "1.1", "2.0rc1", "2.0",
    "2.0.post1", "2.11.0+cu128", "1!0.5", "v1.2", "5.15.0", "5.24.0", "2026.10.19.post1", "2.9.0.post0",
]  # fmt: skip
BOUNDS = ["1.0", "1.0a1", "1.0.post1", "1.0.dev0", "2.0", "1.0.0", "2.11", "1!0.5", "5.24", "0.9"]
SPECIFIERS = [op + bound for op in ("==", "!=", ">=", "<=", "<", ">", "~=") for bound in BOUNDS]
SPECIFIERS += ["==1.*", "!=1.*", "==1.0.*", "!=1.0.*", "==2.*", "==1!0.*", "==1.0+local", "!=1.0+local"]


def test_versions_sort_as_pep_440_says():
    by_packaging = sorted(VERSIONS, key=PackagingVersion)
    by_colab = sorted(VERSIONS, key=parse_version)
    assert [PackagingVersion(v) for v in by_colab] == [PackagingVersion(v) for v in by_packaging]


@pytest.mark.parametrize("specifier", SPECIFIERS)
def test_ranges_match_what_pip_decides(specifier):
    operator = re.match(r"~=|==|!=|<=|>=|<|>", specifier).group(0)
    bound = specifier[len(operator) :]
    if operator == "~=" and len(bound.split("!")[-1].split(".")) < 2:
        pytest.skip("~= needs two release numbers")
    for version in VERSIONS:
        expected = Specifier(specifier).contains(PackagingVersion(version), prereleases=True)
        assert colab.specifier_contains(operator, bound, parse_version(version)) == expected, f"{version} {specifier}"


def test_an_unreadable_version_is_refused_with_its_text():
    with pytest.raises(ValueError, match="'banana' is not a version"):
        parse_version("banana")


def test_requirements_file_is_read_as_pip_reads_it():
    ours = {r.name: r for r in read_requirements(ROOT / "requirements.txt")}
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    theirs = {colab.normalize(r.name): r for r in map(PackagingRequirement, filter(None, lines))}
    assert ours.keys() == theirs.keys()
    for name, requirement in theirs.items():
        for version in ("0.1", "1.0", "2.4", "5.15.0", "5.24.0", "6.0", "2026.1"):
            assert ours[name].contains(version) == requirement.specifier.contains(version, prereleases=True), name


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('numpy>=1.26; python_version < "3.12"', "no options, environment markers or URLs"),
        ("course @ git+https://example.invalid/course", "no options, environment markers or URLs"),
        ("-r other.txt", "no options, environment markers or URLs"),
        ("numpy=>1.26", "cannot read the version range"),
        ("numpy>=one", "is not a version"),
        (">=1.0", "does not start with a package name"),
    ],
)
def test_lines_it_cannot_read_are_named_with_file_and_line(tmp_path, line, message):
    path = tmp_path / "requirements.txt"
    path.write_text(f"# comment\ntorch>=2.4\n{line}\n")
    with pytest.raises(ValueError, match=message) as error:
        read_requirements(path)
    assert f"{path}, line 3" in str(error.value)


def test_extras_and_comments_are_understood(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("fsspec[http] >= 2023.1  # for datasets\n\npeft~=0.17\n")
    fsspec, peft = read_requirements(path)
    assert (fsspec.name, fsspec.range_text, fsspec.line) == ("fsspec", ">=2023.1", "fsspec[http] >= 2023.1")
    assert peft.contains("0.21.2") and not peft.contains("1.0")


# ------------------------------------------------------------------------------ the plan

REQUIREMENTS = [parse_requirement(line) for line in ("torch>=2.4", "numpy>=1.26", "transformers>=5.24,<6", "trl>=1.16", "pandas>=2.2")]


def test_only_what_is_missing_or_out_of_range_is_installed():
    installed = {"torch": "2.11.0+cu128", "numpy": "2.1.3", "transformers": "5.15.0", "pandas": "2.2.3"}
    plan = make_plan(REQUIREMENTS, installed, requires={})
    assert [r.name for r in plan.to_install] == ["transformers", "trl"]
    assert [r.name for r in plan.satisfied] == ["torch", "numpy", "pandas"]
    assert plan.pins == {"numpy": "2.1.3", "torch": "2.11.0+cu128"}


def test_google_colabs_own_requirements_are_protected_too():
    installed = {"torch": "2.11.0", "numpy": "2.1.3", "pandas": "2.2.3", "portpicker": "1.5.2", "google-colab": "1.0.0"}
    plan = make_plan(REQUIREMENTS, installed, requires={"google-colab": ["pandas==2.2.2", "portpicker==1.5.2"]})
    assert plan.pins["pandas"] == "2.2.3" and plan.pins["portpicker"] == "1.5.2" and plan.pins["google-colab"] == "1.0.0"
    assert "pandas==2.2.3" in colab.constraints_text(plan).splitlines()


@pytest.mark.parametrize(("installed", "named"), [({"torch": "2.1.0", "numpy": "2.1.3"}, "2.1.0"), ({"numpy": "2.1.3"}, "missing")])
def test_a_protected_package_out_of_range_stops_everything(installed, named):
    with pytest.raises(SetupError, match=re.escape(f"torch {named} (the course needs >=2.4). Nothing was installed")):
        make_plan(REQUIREMENTS, installed, requires={})


def test_constraints_pin_protected_packages_and_keep_the_course_in_range():
    installed = {"torch": "2.11.0+cu128", "numpy": "2.1.3", "pandas": "2.2.3"}
    lines = colab.constraints_text(make_plan(REQUIREMENTS, installed, requires={})).splitlines()
    assert lines == ["numpy==2.1.3", "torch==2.11.0+cu128", "transformers>=5.24,<6", "trl>=1.16", "pandas>=2.2"]


def test_other_packages_requirements_are_kept_where_they_hold_now():
    installed = {"huggingface-hub": "1.27.0", "fsspec": "2025.3.0", "pandas": "2.2.3", "pyarrow": "18.1.0", "datasets": "4.0.0"}
    requires = {
        "diffusers": ["huggingface-hub<2.0,>=0.34.0", "importlib-metadata"],
        "gcsfs": ["fsspec==2025.3.0", 'pandas (>=1.0) ; python_version >= "3.9"'],
        "broken": ["pandas==2.2.2"],  # already unmet here: not the course's to repair
        "bigframes": ["google-cloud-bigquery[pandas]>=3.36", "pyarrow[all]>=15.0.2", 'pytest; extra == "tests"'],
        "datasets": ["fsspec[http]<=2025.3.0"],  # upgraded by the course: its old limits go
        "local": ["pandas @ file:///somewhere"],
    }
    kept = colab.compatibility_constraints(requires, installed, leave_out={"datasets"})
    assert kept == ["fsspec==2025.3.0", "huggingface-hub<2.0,>=0.34.0", 'pandas>=1.0; python_version >= "3.9"', "pyarrow>=15.0.2"]


def test_changes_are_reported_as_added_changed_and_removed():
    change = colab.changes({"a": "1", "b": "1", "c": "1"}, {"a": "1", "b": "2", "d": "3"})
    assert change == {"added": {"d": "3"}, "changed": {"b": ["1", "2"]}, "removed": ["c"]}
    assert colab.describe_changes(change).splitlines() == ["Installed: d 3.", "Changed: b 1 -> 2.", "Removed: c."]


def test_against_colabs_published_runtime_only_what_it_lacks_is_planned():
    versions = colab_versions()
    versions["google-colab"] = "1.0.0"
    requirements = read_requirements(ROOT / "requirements.txt")
    plan = make_plan(requirements, versions, requires={"google-colab": COLABTOOLS_REQUIRES})
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    expected = [
        colab.normalize(r.name)
        for r in map(PackagingRequirement, filter(None, lines))
        if colab.normalize(r.name) not in versions or not r.specifier.contains(versions[colab.normalize(r.name)], prereleases=True)
    ]
    assert [r.name for r in plan.to_install] == expected
    assert not {"torch", *DEVELOPMENT_TOOLS, "ipywidgets"} & {r.name for r in plan.to_install}
    for name in UNTOUCHABLE:
        assert plan.pins[name] == versions[name]


def test_check_requirements_names_what_is_missing(tmp_path):
    (tmp_path / "requirements.txt").write_text("pytest>=1.0\nno-such-package-for-the-course>=1.0\n")
    with pytest.raises(SetupError, match="no-such-package-for-the-course >=1.0 \\(have none\\)"):
        colab.check_requirements(tmp_path)
    (tmp_path / "requirements.txt").write_text("pytest>=1.0\n")
    colab.check_requirements(tmp_path)


def test_the_script_reads_only_the_standard_library_and_packaging_which_colab_ships():
    imports = re.findall(r"^(?:from|import) (\w+)", Path(colab.__file__).read_text(), flags=re.MULTILINE)
    assert set(imports) <= set(sys.stdlib_module_names) | {"__future__", "packaging"}
    assert "packaging" in colab_versions(), "Colab's image must ship packaging"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_notebook_starts_with_the_colab_cell(path):
    notebook = nbformat.read(path, as_version=4)
    first_code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert first_code.source == colab.COLAB_CELL, f"{path.name}: its first code cell must be utils.colab.COLAB_CELL"


# ---------------------------------------------------------------------- the simulation

# Colab packages that declare limits on what the course upgrades (diffusers and gradio:
# huggingface-hub<2; sentence-transformers: transformers<6). Installed without their own
# dependencies: only what they declare matters here.
BYSTANDERS = ("diffusers", "sentence-transformers", "timm")


@dataclass
class Simulation:
    """What the simulated Colab runtime looked like before and after the first cell."""

    python: Path
    clone: Path
    before: dict[str, str]
    after: dict[str, str]
    outputs: list[str]  # the text each cell printed
    planned: list[str]  # what the set-up said it would install
    needed_by: dict[str, list[str]]  # each other package it added or changed -> the requirements that made it


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def snapshot_repository(target: Path) -> str:
    """A git repository with the course as it is here (committed or not): what a learner would clone."""
    listed = run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    run(["git", "init", "--quiet", str(target)])
    run(["git", "-C", str(target), "add", "--all"])
    identity = ["-c", "user.name=course", "-c", "user.email=course@example.invalid"]
    run(["git", "-C", str(target), *identity, "commit", "--quiet", "--message", "snapshot"])
    return target.as_uri()


def link_torch(environment: Path) -> None:
    """Hard-link (or copy) this environment's torch into another one of the same Python.

    Links, not symlinks: if pip there ever removed torch, it would remove its own links only.
    """
    distribution = importlib.metadata.distribution("torch")
    site = Path(distribution.locate_file(""))
    target = next((environment / "lib").glob("python3*/site-packages"))
    tops = {Path(str(f)).parts[0] for f in distribution.files if not str(f).startswith("..")}
    for top in tops:
        try:
            shutil.copytree(site / top, target / top, copy_function=os.link)
        except OSError:  # another file system: copy
            shutil.rmtree(target / top, ignore_errors=True)
            shutil.copytree(site / top, target / top)


def colab_environment(environment: Path, scratch: Path) -> None:
    """A virtual environment with Colab's versions of what the course could touch, and this torch."""
    versions = colab_versions()
    left_out = {"torch", "torchvision", "torchaudio", "setuptools"}  # this torch needs a newer setuptools
    lock = {colab.normalize(line.split("==")[0]) for line in (ROOT / "requirements-lock.txt").read_text().splitlines() if "==" in line}
    torch_needs = {colab.normalize(PackagingRequirement(r).name) for r in importlib.metadata.requires("torch") if "extra ==" not in r}
    frontend = {colab.normalize(PackagingRequirement(r).name) for r in COLABTOOLS_REQUIRES}
    wanted = sorted(((lock | set(colab.PROTECTED) | frontend | torch_needs | {"pip"}) & versions.keys()) - left_out)
    (scratch / "subset.txt").write_text("".join(f"{name}=={versions[name]}\n" for name in wanted))
    (scratch / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in versions.items() if n not in left_out))
    uv = [sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(environment / "bin" / "python")]
    run([sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, str(environment)])
    link_torch(environment)
    run([*uv, "-r", str(scratch / "subset.txt"), "-c", str(scratch / "constraints.txt")])
    run([*uv, "--no-deps", *(f"{name}=={versions[name]}" for name in BYSTANDERS)])


def fake_google_colab(folder: Path) -> Path:
    """A google.colab module and a google-colab distribution that declares the real one's requirements."""
    (folder / "google" / "colab").mkdir(parents=True)
    (folder / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s google.colab in the tests."""\n')
    info = folder / "google_colab-1.0.0.dist-info"
    info.mkdir()
    requires = "".join(f"Requires-Dist: {line}\n" for line in COLABTOOLS_REQUIRES)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: google-colab\nVersion: 1.0.0\n{requires}")
    (info / "RECORD").write_text("")
    return folder


SNAPSHOT = "import importlib.metadata, json; print(json.dumps({d.metadata['Name']: d.version for d in importlib.metadata.distributions()}))"
NEEDED_BY = """
import importlib.metadata, json, sys
from packaging.requirements import Requirement
wanted = json.loads(sys.argv[1])  # name -> its version before (None: it was not installed)
needed_by = {name: [] for name in wanted}
for distribution in importlib.metadata.distributions():
    for text in distribution.requires or []:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-").replace(".", "-")
        if name not in wanted or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        old = wanted[name]
        if old is None or not requirement.specifier.contains(old, prereleases=True):
            needed_by[name].append(distribution.metadata["Name"] + " needs " + str(requirement))
print(json.dumps(needed_by))
"""


def installed(python: Path, env: dict[str, str]) -> dict[str, str]:
    names = json.loads(run([str(python), "-c", SNAPSHOT], env=env).stdout)
    return {colab.normalize(name): version for name, version in names.items() if name}


def cached_assets(target: Path) -> None:
    """A cache with the course's prepared assets, except SmolLM2, which the simulation converts again."""
    from utils import assets

    source = assets.cache_dir()
    target.mkdir()
    for name in ("minilm", "movie-reviews", "shakespeare"):
        if assets.is_prepared(name, source):
            shutil.copytree(source / name, target / name)


FETCH_ASSETS = """\
import subprocess

fetched = subprocess.run([sys.executable, "-m", "utils.assets"], capture_output=True, text=True)
print(fetched.stdout, fetched.stderr)
assert fetched.returncode == 0"""
LOAD_MODELS = """\
import torch
from utils.models import load_causal_lm, load_classifier, load_tokenizer

classifier, tokenizer, model = load_classifier("minilm"), load_tokenizer("smollm2"), load_causal_lm("smollm2")
prompt = tokenizer("The capital of France is", return_tensors="pt")
with torch.no_grad():
    print(repr(tokenizer.decode(model.generate(**prompt, max_new_tokens=3, do_sample=False)[0])))"""


def simulation_notebook() -> nbformat.NotebookNode:
    cells = [
        "import google.colab  # Colab's kernel imports it when it starts",
        colab.COLAB_CELL,
        "import json, os, sys\nimport utils\nprint(json.dumps({'executable': sys.executable, 'utils': utils.__file__}))",
        FETCH_ASSETS,
        LOAD_MODELS,
    ]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    return notebook


def cell_text(cell: nbformat.NotebookNode) -> str:
    """What a cell printed (shell commands print through a terminal: \\r\\n line ends)."""
    text = "".join(output.get("text", "") + "".join(output.get("traceback", [])) for output in cell.outputs)
    return text.replace("\r\n", "\n")


def execute_in_kernel(notebook: nbformat.NotebookNode, python: Path, env: dict[str, str], scratch: Path) -> None:
    """Run a notebook in a kernel of the simulated runtime, in its working folder ``content/``."""
    kernels = scratch / "jupyter" / "kernels" / "colab"
    kernels.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernels / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Colab", "language": "python", "env": env}))
    (scratch / "content").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(scratch / "jupyter"))
        NotebookClient(notebook, kernel_name="colab", timeout=900, resources={"metadata": {"path": str(scratch / "content")}}).execute()


@pytest.fixture(scope="module")
def simulation(tmp_path_factory) -> Simulation:
    if importlib.util.find_spec("uv") is None or shutil.which("git") is None:
        pytest.skip("the Colab simulation needs uv (make installs it unless USE_UV=0) and git")
    scratch = tmp_path_factory.mktemp("colab")
    (scratch / "origin").mkdir()
    repository = snapshot_repository(scratch / "origin")
    python = scratch / "runtime" / "bin" / "python"
    colab_environment(scratch / "runtime", scratch)
    fake = fake_google_colab(scratch / "fake-colab")
    cached_assets(scratch / "cache")
    env = {**os.environ, "PYTHONPATH": str(fake), "COURSE_REPO_URL": repository, "COURSE_CACHE_DIR": str(scratch / "cache")}
    before = installed(python, env)
    notebook = simulation_notebook()
    execute_in_kernel(notebook, python, env, scratch)
    after = installed(python, env)
    outputs = [cell_text(cell) for cell in notebook.cells]
    planned = re.findall(r"^  to install: (\S+)", outputs[1], flags=re.MULTILINE)
    touched = {name for name in after if after[name] != before.get(name)} - {*planned, "finetuning-course"}
    others = json.dumps({name: before.get(name) for name in touched})
    needed_by = json.loads(run([str(python), "-c", NEEDED_BY, others], env=env).stdout)
    return Simulation(python, scratch / "content" / "course", before, after, outputs, planned, needed_by)


def printed_changes(output: str) -> dict:
    """What the set-up cell said it installed and changed."""
    added = re.search(r"^Installed: (.*)\.$", output, flags=re.MULTILINE).group(1)
    changed = re.search(r"^Changed: (.*)\.$", output, flags=re.MULTILINE).group(1)
    return {
        "added": dict(item.split(" ") for item in added.split(", ")) if added != "nothing" else {},
        "changed": {n: [o, v] for n, o, v in re.findall(r"(\S+) (\S+) -> (\S+?)(?:,|$)", changed)},
    }


@slow
def test_colab_cell_installs_only_what_the_course_lacks(simulation):
    change = colab.changes(simulation.before, simulation.after)
    setup_output = simulation.outputs[1]
    print(setup_output)
    assert printed_changes(setup_output) == {"added": change["added"], "changed": change["changed"]}
    assert not change["removed"]
    before = simulation.before
    expected = [r.name for r in read_requirements(ROOT / "requirements.txt") if r.name not in before or not r.contains(before[r.name])]
    assert simulation.planned == expected, "only what Colab lacks or has out of range"
    for name, reasons in simulation.needed_by.items():
        assert reasons, f"{name} was added or changed although nothing the course installs needs it"
    touched = change["added"].keys() | change["changed"].keys()
    assert touched <= {*simulation.planned, *simulation.needed_by, "finetuning-course"}
    assert not touched & set(DEVELOPMENT_TOOLS)
    assert "New dependency conflicts: none." in setup_output


@slow
def test_colab_cell_leaves_torch_numpy_kernel_widgets_and_frontend_alone(simulation):
    for name in UNTOUCHABLE:
        assert simulation.after[name] == simulation.before[name], name
    kept = re.search(r"^Kept exactly as they are: (.*)\.$", simulation.outputs[1], flags=re.MULTILINE).group(1)
    for item in kept.split(", "):
        name, version = item.split(" ")
        assert simulation.after[name] == simulation.before[name] == version, name
    before = simulation.before
    for name in [r.name for r in read_requirements(ROOT / "requirements.txt") if r.name in before and r.contains(before[r.name])]:
        if simulation.after[name] != before[name]:  # in the course's range, but too old for a package it installs
            assert simulation.needed_by[name], f"{name} was in range and nothing needed another version"


@slow
def test_after_the_colab_cell_utils_imports_and_the_assets_are_prepared(simulation):
    kernel = json.loads(simulation.outputs[2])
    assert Path(kernel["executable"]) == simulation.python
    assert Path(kernel["utils"]).resolve().parent == (simulation.clone / "utils").resolve()
    assert "smollm2" in simulation.outputs[3] and "Cache size" in simulation.outputs[3]
    assert "Paris" in simulation.outputs[4]

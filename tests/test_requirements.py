"""The environment files agree with each other, with the pinned torch, and with CI."""

import re
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def requirement_lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def requirements(filename: str = "requirements-dev.txt") -> dict[str, Requirement]:
    """The requirements of a file, following its ``-r other-file`` includes."""
    parsed = {}
    for line in requirement_lines((ROOT / filename).read_text()):
        if line.startswith("-r "):
            parsed |= requirements(line.removeprefix("-r ").strip())
        else:
            requirement = Requirement(line)
            parsed[requirement.name.lower()] = requirement
    return parsed


def lock() -> dict[str, Version]:
    pins = {}
    for line in requirement_lines((ROOT / "requirements-lock.txt").read_text()):
        name, version = line.split("==")
        pins[name.lower().replace("_", "-")] = Version(version)
    return pins


def test_environment_yml_installs_the_development_requirements():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert pip_section == ["-r requirements-dev.txt"]
    assert "python=3.11" in environment["dependencies"]


def test_the_development_requirements_include_the_runtime_ones():
    runtime = requirements("requirements.txt")
    development = requirements("requirements-dev.txt")
    assert runtime.items() <= development.items()
    tools = {"jupyterlab", "nbval", "pytest", "pytest-xdist", "ruff", "ipywidgets"}
    assert tools <= development.keys() and not tools & runtime.keys(), "test and lab tools stay out of the runtime file"


def test_the_lock_pins_every_requirement_within_its_range():
    pins = lock()
    for name, requirement in requirements().items():
        if name == "torch":
            continue  # installed first, before the lock
        assert name in pins, f"{name} is required but not in requirements-lock.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {requirement}"
    assert "torch" not in pins, "torch must not be in the lock: Colab and CUDA users keep their own"


def test_the_pinned_torch_satisfies_the_range_so_colab_keeps_its_own():
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"TORCH_SPEC \?= torch==([\d.]+)", makefile).group(1)
    assert pinned == "2.13.0"
    assert requirements("requirements.txt")["torch"].specifier.contains(pinned)


def test_ci_runs_the_test_command_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)$", quick_start, flags=re.MULTILINE)
    assert commands == ["make lab", "make test"]
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)
    for variable in ("CI=true", "HF_HUB_OFFLINE=1", "HF_EVALUATE_OFFLINE=1"):
        assert variable in ci

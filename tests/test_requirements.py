"""The environment files agree with each other, with the pinned torch, and with CI."""

import re
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def requirement_lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def requirements() -> dict[str, Requirement]:
    parsed = [Requirement(line) for line in requirement_lines((ROOT / "requirements.txt").read_text())]
    return {r.name.lower(): r for r in parsed}


def lock() -> dict[str, Version]:
    pins = {}
    for line in requirement_lines((ROOT / "requirements-lock.txt").read_text()):
        name, version = line.split("==")
        pins[name.lower().replace("_", "-")] = Version(version)
    return pins


def test_environment_yml_names_the_same_packages_as_requirements_txt():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    conda = {Requirement(line).name.lower(): str(Requirement(line).specifier) for line in pip_section}
    assert conda == {name: str(r.specifier) for name, r in requirements().items()}
    assert "python=3.11" in environment["dependencies"]


def test_the_lock_pins_every_requirement_within_its_range():
    pins = lock()
    for name, requirement in requirements().items():
        if name == "torch":
            continue  # installed first, before the lock
        assert name in pins, f"{name} is in requirements.txt but not in requirements-lock.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {requirement}"
    assert "torch" not in pins, "torch must not be in the lock: Colab and CUDA users keep their own"


def test_the_pinned_torch_satisfies_the_range_so_colab_keeps_its_own():
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"TORCH_SPEC \?= torch==([\d.]+)", makefile).group(1)
    assert pinned == "2.13.0"
    assert requirements()["torch"].specifier.contains(pinned)


def test_ci_runs_the_test_command_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)$", quick_start, flags=re.M)
    assert commands == ["make lab", "make test"]
    assert re.search(r"^make test$", ci, flags=re.M)
    for variable in ("CI=true", "HF_HUB_OFFLINE=1", "HF_EVALUATE_OFFLINE=1"):
        assert variable in ci

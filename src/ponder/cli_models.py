"""What the `ponder` commands share about models: the store, the model a command
names, and pulling what it needs before it starts."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ponder.config import EmbeddedSpec, Settings
from ponder.models import ModelStore
from ponder.progress import TerminalProgress


def model_store(settings: Settings) -> ModelStore:
    """The models pulled into the data dir."""
    return ModelStore(settings.models_dir, settings.cache_dir)


def choose_model(model: str | None, settings: Settings) -> tuple[Settings, str]:
    """`--model` may be a served name, a catalogue name, a .gguf path or hf:... source."""
    model = model or settings.default_model
    if model.endswith(".gguf") and model not in settings.models:
        name = Path(model.split("/")[-1]).stem
        settings = settings.with_model(EmbeddedSpec(name=name, source=model))
        model = name
    return replace(settings, default_model=model), model


def ensure_pulled(settings: Settings, name: str) -> None:
    spec = settings.models.get(name, EmbeddedSpec(name=name, source=name))
    if isinstance(spec, EmbeddedSpec):
        source = spec.source or name
        store = model_store(settings)
        if not store.path_for(source).exists():  # present files are verified when loaded
            print(f"pulling {source} (first run only)", file=sys.stderr)
            store.pull(source, TerminalProgress(source))


def ensure_voice(settings: Settings) -> None:
    """Pull the speech models `[media]` names, so the first voice request does not wait minutes."""
    from ponder.media import models as media_models

    for source in (settings.media.speech_to_text, settings.media.text_to_speech):
        bundle = media_models.BUNDLES.get(source)
        if bundle and not media_models.present(bundle, settings.models_dir):
            print(f"pulling {source} (first run only)", file=sys.stderr)
        if source:
            media_models.resolve(source, settings.models_dir, settings.cache_dir, TerminalProgress(source))

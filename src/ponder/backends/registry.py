"""Model names -> backends.

A name is served if config declares it (`[models.NAME]`), if it is a pulled
catalogue model, or if a backend was handed in directly (tests, `--model PATH`).
An alias (`[aliases]`) is one more name for one of those.
Backends are built on first use and kept; embedded ones load their weights then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ponder.backends.base import Backend
from ponder.config import EmbeddedSpec, ModelSpec, RemoteSpec, ScriptedSpec, Settings
from ponder.errors import ModelNotFound
from ponder.models import ModelStore


class Registry:
    def __init__(self, settings: Settings, store: ModelStore, backends: Mapping[str, Backend] | None = None):
        self.settings = settings
        self.store = store
        self._backends: dict[str, Backend] = dict(backends or {})
        self._lock = asyncio.Lock()

    def names(self) -> list[str]:
        names = list(self._backends) + list(self.settings.models) + list(self.settings.aliases)
        names += [m.name for m in self.store.list_models() if m.present and not m.name.startswith("hf:")]
        return list(dict.fromkeys(names))  # keep order, drop repeats

    def mode_for(self, name: str, mode: str | None, effort: str | None) -> tuple[str | None, str | None]:
        """The request's mode and effort, with an alias's filling what the request left out
        (an explicit effort of "none" still means Instant)."""
        alias = self.settings.aliases.get(name)
        if alias is None:
            return mode, effort
        if mode is None and effort != "none":
            mode = alias.mode
        return mode, effort if effort is not None else alias.effort

    def loaded(self) -> Mapping[str, Backend]:
        return dict(self._backends)

    async def get(self, name: str) -> Backend:
        if alias := self.settings.aliases.get(name):
            name = alias.model
        if name in self._backends:
            return self._backends[name]
        async with self._lock:
            if name not in self._backends:
                self._backends[name] = self._build(self._spec(name))
            return self._backends[name]

    def _spec(self, name: str) -> ModelSpec:
        if name in self.settings.models:
            return self.settings.models[name]
        if name in self.store.catalog:
            return EmbeddedSpec(name=name, source=name)
        served = ", ".join(self.names()) or "none"
        raise ModelNotFound(f"The model `{name}` does not exist or is not served here. Served models: {served}.",
                            param="model")  # fmt: skip

    def _build(self, spec: ModelSpec) -> Backend:
        if isinstance(spec, RemoteSpec):
            from ponder.backends.remote import RemoteBackend

            def remote(url: str) -> RemoteBackend:
                return RemoteBackend(url, spec.upstream_model, spec.api_key, timeout=spec.timeout_s,
                                     prefill=spec.prefill, vision=spec.vision, audio=spec.audio,
                                     max_concurrency=spec.max_concurrency, thinking=spec.thinking)  # fmt: skip

            if spec.base_urls:
                from ponder.backends.pool import PoolBackend

                return PoolBackend([remote(u) for u in spec.base_urls], spec.health_interval_s, spec.max_concurrency)
            return remote(spec.base_url)
        if isinstance(spec, ScriptedSpec):
            from ponder.backends.scripted import ScriptedBackend

            return ScriptedBackend(delay=spec.delay_s)
        from ponder.backends.embedded import EmbeddedBackend

        path = self.store.resolve(spec.source or spec.name)  # raises if absent or corrupt
        if spec.mmproj:
            from pathlib import Path

            from ponder.backends.vision import VisionBackend

            return VisionBackend(path, Path(spec.mmproj).expanduser(), self.settings.engine, spec.chat_handler,
                                 spec.n_ctx)  # fmt: skip
        return EmbeddedBackend(path, self.settings.engine, n_ctx=spec.n_ctx)

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self._backends.values()))
        self._backends.clear()

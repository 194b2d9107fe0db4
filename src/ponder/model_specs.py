"""How one model name is served: a spec per kind of backend (`[models.NAME]` in the
config file), each with only its own keys, and the reading of one from its table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ponder.errors import ConfigError


@dataclass(frozen=True)
class EmbeddedSpec:
    """A model served in this process by llama.cpp."""

    name: str
    source: str = ""  # a catalogue name, a .gguf path or hf:OWNER/REPO/FILE (default: the name)
    n_ctx: int | None = None  # per-model override of [engine] n_ctx
    mmproj: str = ""  # a vision model's multimodal projector (GGUF); it then sees images itself
    chat_handler: str = "mtmd"  # with mmproj: llama-cpp-python's handler (ponder.backends.vision)
    backend: Literal["embedded"] = "embedded"


@dataclass(frozen=True)
class RemoteSpec:
    """A model an OpenAI-compatible engine serves (vLLM, SGLang, llama-server, …): at
    `base_url`, or at several replicas routed as a pool (`base_urls`, ponder.backends.pool)."""

    name: str
    base_url: str = ""
    base_urls: tuple[str, ...] = ()
    timeout_s: float = 600.0  # per request to the engine
    max_concurrency: int = 64  # requests at once, per replica
    health_interval_s: float = 5.0  # a pool: seconds between health checks of each replica
    upstream_model: str = ""  # the engine's own name for the model
    api_key: str | None = field(default=None, repr=False)  # never printed
    prefill: bool = False  # the engine supports continue_final_message (vLLM, SGLang)
    # how the engine turns thinking on/off and caps it: "vllm" (chat_template_kwargs
    # enable_thinking + thinking_token_budget), "sglang" (enable_thinking + thinking_budget), "" none
    thinking: str = ""
    vision: bool = False  # the engine takes images (a VLM); otherwise they are OCR'd first
    audio: bool = False  # the engine takes input_audio; otherwise it is transcribed first
    backend: Literal["remote"] = "remote"


@dataclass(frozen=True)
class ScriptedSpec:
    """The scripted echo model (ponder.backends.scripted): for tests and load benchmarks."""

    name: str
    delay_s: float = 0.0  # seconds per token, to pace it like an engine
    backend: Literal["scripted"] = "scripted"


# How one model name is served: a spec per kind of backend, each with only its own keys.
ModelSpec = EmbeddedSpec | RemoteSpec | ScriptedSpec
SPECS: dict[str, type[EmbeddedSpec] | type[RemoteSpec] | type[ScriptedSpec]] = {
    "embedded": EmbeddedSpec, "remote": RemoteSpec, "scripted": ScriptedSpec}  # fmt: skip


def model_spec(name: str, body: Mapping[str, Any], env: Mapping[str, str]) -> ModelSpec:
    """The spec of model `name` from its `[models.NAME]` table (api_key_env read from `env`)."""
    body = dict(body)
    kind = body.pop("backend", "embedded")
    if kind not in SPECS:
        raise ConfigError(f"config [models.{name}] backend: use {', '.join(SPECS)}, not {kind!r}")
    if kind != "remote":
        try:
            return SPECS[kind](name=name, **body)
        except TypeError as e:
            article = "an" if kind == "embedded" else "a"
            raise ConfigError(f"config [models.{name}]: {_unknown_key(e)} for {article} {kind} model") from e
    key_env = body.pop("api_key_env", None)
    upstream = body.pop("model", None)
    if "base_urls" in body:
        urls = body["base_urls"]
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and "://" in u for u in urls):
            raise ConfigError(f'config [models.{name}] base_urls: a list of engine URLs, e.g. ["http://a:8000/v1"]')
        body["base_urls"] = tuple(urls)
    try:
        spec = RemoteSpec(name=name, **body)
    except TypeError as e:
        raise ConfigError(f"config [models.{name}]: {_unknown_key(e)} for a remote model") from e
    if upstream:
        spec = replace(spec, upstream_model=upstream)
    if key_env:
        spec = replace(spec, api_key=env.get(key_env))
    if not spec.base_url and not spec.base_urls:
        raise ConfigError(f"config [models.{name}]: a remote model needs base_url (or base_urls, for replicas)")
    for field_name in ("timeout_s", "health_interval_s", "max_concurrency"):
        value = getattr(spec, field_name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"config [models.{name}] {field_name}: must be a positive number")
    if spec.thinking not in ("", "vllm", "sglang"):
        raise ConfigError(f'config [models.{name}] thinking: use "vllm" or "sglang", or leave it out')
    if spec.base_url and spec.base_urls:
        raise ConfigError(f"config [models.{name}]: give base_url or base_urls, not both")
    return spec


def _unknown_key(e: TypeError) -> str:
    """ "__init__() got an unexpected keyword argument 'x'" -> "unknown key 'x'"."""
    text = str(e)
    return f"unknown key {text.rsplit(' ', 1)[-1]}" if "unexpected keyword" in text else text

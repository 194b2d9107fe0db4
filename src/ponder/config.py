"""Settings, loaded once from a TOML file, the environment and CLI flags (in that
order, later wins) and then passed around explicitly. There is no global config.

    # ~/.config/ponder/config.toml
    default_model = "qwen2.5-coder-1.5b"
    port = 8000

    [engine]
    n_ctx = 8192                   # per sequence
    n_threads = 2
    n_seq_max = 4                  # sequences decoded together (the batched engine); 1: one at a time

    [modes]
    default = "auto"               # auto | instant | thinking | contemplating
    effort = "medium"              # reasoning budget when a request names none
    agents = 4                     # contemplating sub-agents

    [models.qwen3-vllm]            # any OpenAI-compatible engine
    backend = "remote"
    base_url = "http://127.0.0.1:8001/v1"
    model = "Qwen/Qwen3-8B"         # the name the engine knows it by
    api_key_env = "VLLM_API_KEY"

    [models.mine]                  # a GGUF of your own, or hf:OWNER/REPO/FILE.gguf
    source = "/models/my-model.gguf"

    [aliases."muse-spark-1.3"]      # another name, with the mode it implies
    model = "qwen2.5-coder-1.5b"
    mode = "thinking"

    [tools]                        # server-side tools (see ponder.tools)
    enabled = ["calculator"]       # on for every request; others are turned on per request
    max_steps = 4                  # rounds of tool calls before the model must answer
    code_execution = false         # the code_interpreter tool (a sandboxed process)

    [media]                        # voice, images, files (see ponder.config.MediaSettings)
    speech_to_text = "whisper-base"  # "" turns audio input off
    text_to_speech = "joe"
    image_urls = false             # fetch http(s) image URLs

    [server]                       # who may call, and how much (see ponder.config.ServerSettings)
    auth = "auto"                  # keys (`ponder keys create`) required off loopback; "required" | "off"
    cors_origins = []              # browser origins allowed to call the API; none: CORS off
    max_queue = 32                 # requests waiting per engine; past that, 429 with Retry-After

    [store]                        # where responses, chats and keys live (see ponder.store)
    url = ""                       # "": ponder.db in the data dir; postgresql://USER:PASSWORD@HOST:5432/DB: shared

    [mcp.warehouse]                # an MCP server: command (stdio) or url (Streamable HTTP)
    command = ["python", "/srv/warehouse_mcp.py"]
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from ponder.errors import ConfigError
from ponder.model_specs import SPECS as SPECS  # re-exported: the specs are part of the settings
from ponder.model_specs import EmbeddedSpec as EmbeddedSpec
from ponder.model_specs import ModelSpec as ModelSpec
from ponder.model_specs import RemoteSpec as RemoteSpec
from ponder.model_specs import ScriptedSpec as ScriptedSpec
from ponder.model_specs import model_spec

DEFAULT_MODEL = "qwen2.5-coder-1.5b"


@dataclass(frozen=True)
class EngineSettings:
    n_ctx: int = 8192
    n_threads: int = max(1, min(os.cpu_count() or 1, 8))
    n_batch: int = 512
    n_ubatch: int = 512
    # Sequences decoded together in one batch (Contemplating's agents, concurrent
    # requests), each with n_ctx of KV cache: the batched engine. 1 selects the simple
    # one-at-a-time engine (`LlamaEngine`).
    n_seq_max: int = 4
    temperature: float = 0.7
    top_p: float = 0.95


EffortName = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
EFFORT_BUDGETS: dict[str, int] = {  # by EffortName
    "none": 0,
    "minimal": 128,
    "low": 256,
    "medium": 512,
    "high": 1024,
    "xhigh": 2048,
    "max": 4096,
}


ModeName = Literal["auto", "instant", "thinking", "contemplating"]
MODE_NAMES: tuple[ModeName, ...] = get_args(ModeName)
# Ponder's server-side tools, by the type a request names them with (`ponder.tools`)
ToolKind = Literal["calculator", "file_search", "code_interpreter", "web_fetch", "mcp"]
TOOL_KINDS: tuple[ToolKind, ...] = get_args(ToolKind)
AUTO_CONFIDENCE = 5.3  # the lowest 32-token window; see docs/modes.md (fitted on items the benches skip)


@dataclass(frozen=True)
class ModeSettings:
    """Defaults for the three modes; each can be overridden per request."""

    default: str = "auto"  # auto | instant | thinking | contemplating
    effort: str = "medium"  # the thinking budget when a request names none
    compression: bool = True  # stop thinking early once answer probes agree
    probe_every: int = 64  # reasoning tokens between answer probes
    agents: int = 4  # contemplating: sub-agents
    agent_effort: str = "medium"  # contemplating: each sub-agent's budget
    agent_timeout_s: float = 600.0
    strategy: str = "auto"  # contemplating: auto | attempts | subtasks
    programs: bool = True  # programs (in the sandbox) for questions with numbers: Thinking's check, agents
    # auto: an answer whose confidence (modes.confidence, the lowest window) is below
    # this escalates to Contemplating
    auto_confidence: float = AUTO_CONFIDENCE


@dataclass(frozen=True)
class Alias:
    """Another name for a served model, with the mode (and effort) it implies, so code
    written for a closed API (`model="muse-spark-1.3"`) runs unchanged."""

    name: str
    model: str
    mode: str | None = None
    effort: str | None = None


@dataclass(frozen=True)
class McpServer:
    """An MCP server agents may use: started over stdio (`command`) or reached at `url`."""

    name: str
    command: tuple[str, ...] = ()
    url: str = ""
    env: Mapping[str, str] | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True)
class ToolSettings:
    enabled: tuple[str, ...] = ()  # hosted tools every request gets
    max_steps: int = 4
    code_execution: bool = False
    fetch_hosts: tuple[str, ...] = ()  # hosts the web_fetch tool may reach ("*.example.org" too); none: off
    mcp: Mapping[str, McpServer] = field(default_factory=dict)


MiB = 1 << 20


@dataclass(frozen=True)
class MediaSettings:
    """Voice, images and files: the models that hear and speak, and the limits on
    what a request may carry (per part, and per request)."""

    # A catalogue name (`ponder models`), a local model (a CTranslate2 Whisper
    # directory; a Piper .onnx voice), or hf:OWNER/REPO[/FILE]. "" turns it off.
    speech_to_text: str = "whisper-base"
    text_to_speech: str = "joe"
    whisper_fit: bool = True  # encode a short clip's window at its length, not padded to 30 s (ponder.media.audio)
    max_image_bytes: int = 20 * MiB
    max_image_pixels: int = 50_000_000
    max_audio_bytes: int = 25 * MiB
    max_audio_seconds: float = 1200.0  # per part, and for all of a request's audio together
    max_file_bytes: int = 20 * MiB
    max_file_pages: int = 100
    max_file_chars: int = 100_000  # of text extracted from one file
    max_parts: int = 16  # images, audio and files in one request
    max_request_bytes: int = 50 * MiB  # of media in one request
    image_urls: bool = False  # fetch http(s) image URLs (otherwise data URLs only)
    image_url_timeout_s: float = 10.0


@dataclass(frozen=True)
class ServerSettings:
    """Access, limits and backpressure for `ponder serve`."""

    # "auto": API keys are required when the server binds to an address other than
    # loopback; "required": always; "off": never (anyone who can connect is trusted).
    auth: str = "auto"
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are named ("*" allows any)
    max_body_bytes: int = 80 * MiB  # a request body (media arrive base64: 4/3 of their size)
    max_messages: int = 2048  # in one request, history included
    max_tokens: int = 32768  # the most a request may ask for (max_tokens, max_output_tokens)
    max_agents: int = 16  # contemplating sub-agents in one request
    max_n: int = 16  # choices in one chat completion (n)
    # Requests an engine runs at once (0: its own capacity, n_seq_max for the embedded
    # engine) and the most that may wait for it; one more gets 429 and Retry-After.
    max_running: int = 0
    max_queue: int = 32
    request_timeout_s: float = 900.0  # a request's whole life, streaming included
    # A key's running request holds a lease in the store, renewed while it runs: a
    # process that dies frees its keys' concurrency within this many seconds.
    key_lease_s: float = 30.0
    drain_timeout_s: float = 30.0  # on shutdown, how long in-flight requests may finish
    log_format: str = "text"  # "json": one JSON object per line, with request ids


@dataclass(frozen=True)
class StoreSettings:
    """Where stored responses, the web app's chats and the API keys live: "" is the
    SQLite file `ponder.db` in the data dir; a postgresql:// URL is a database that
    several Ponder servers share (never shown with its password)."""

    url: str = field(default="", repr=False)


@dataclass(frozen=True)
class Settings:
    default_model: str = DEFAULT_MODEL
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=lambda: _default_data_dir())
    engine: EngineSettings = field(default_factory=EngineSettings)
    modes: ModeSettings = field(default_factory=ModeSettings)
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    aliases: Mapping[str, Alias] = field(default_factory=dict)
    tools: ToolSettings = field(default_factory=ToolSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    def with_model(self, spec: ModelSpec) -> Settings:
        return replace(self, models={**self.models, spec.name: spec})


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ponder"


def default_config_path(env: Mapping[str, str]) -> Path:
    if "PONDER_CONFIG" in env:
        return Path(env["PONDER_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ponder" / "config.toml"


_ENV_KEYS: dict[str, tuple[str, type]] = {
    "PONDER_MODEL": ("default_model", str),
    "PONDER_HOST": ("host", str),
    "PONDER_PORT": ("port", int),
    "PONDER_HOME": ("data_dir", Path),
}
_SERVER_ENV_KEYS: dict[str, tuple[str, type]] = {
    "PONDER_AUTH": ("auth", str),
    "PONDER_MAX_QUEUE": ("max_queue", int),
    "PONDER_MAX_RUNNING": ("max_running", int),
    "PONDER_REQUEST_TIMEOUT": ("request_timeout_s", float),
    "PONDER_LOG_FORMAT": ("log_format", str),
}
_ENGINE_ENV_KEYS: dict[str, str] = {
    "PONDER_N_CTX": "n_ctx",
    "PONDER_THREADS": "n_threads",
    "PONDER_N_BATCH": "n_batch",
    "PONDER_N_SEQ": "n_seq_max",
}


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """File, then environment, then explicit overrides (CLI flags; `None` is ignored)."""
    env = os.environ if env is None else env
    path = path or default_config_path(env)
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from e

    top: dict[str, Any] = {k: raw[k] for k in ("default_model", "host", "port") if k in raw}
    if "data_dir" in raw:
        top["data_dir"] = Path(raw["data_dir"]).expanduser()
    engine_raw: dict[str, Any] = dict(raw.get("engine", {}))

    for key, (attr, kind) in _ENV_KEYS.items():
        if env.get(key):
            top[attr] = kind(env[key])
    for key, attr in _ENGINE_ENV_KEYS.items():
        if env.get(key):
            engine_raw[attr] = int(env[key])
    top.update({k: v for k, v in overrides.items() if v is not None})

    modes_raw: dict[str, Any] = dict(raw.get("modes", {}))
    if env.get("PONDER_MODE"):
        modes_raw["default"] = env["PONDER_MODE"]
    try:
        engine = EngineSettings(**engine_raw)
        modes = ModeSettings(**modes_raw)
    except TypeError as e:
        raise ConfigError(f"config [engine] or [modes]: {e}") from e
    _check_modes(modes)
    models = {name: model_spec(name, body, env) for name, body in raw.get("models", {}).items()}
    aliases = {name: _alias(name, body) for name, body in raw.get("aliases", {}).items()}
    tools = _tools(raw.get("tools", {}), raw.get("mcp", {}))
    try:
        media = MediaSettings(**raw.get("media", {}))
    except TypeError as e:
        raise ConfigError(f"config [media]: {e}") from e
    server = _server(raw.get("server", {}), env)
    store = _store(raw.get("store", {}), env)
    return Settings(engine=engine, modes=modes, models=models, aliases=aliases, tools=tools, media=media,
                    server=server, store=store, **top)  # fmt: skip


def _server(body: Mapping[str, Any], env: Mapping[str, str]) -> ServerSettings:
    body = dict(body)
    for key, (attr, kind) in _SERVER_ENV_KEYS.items():
        if env.get(key):
            try:
                body[attr] = kind(env[key])
            except ValueError:
                raise ConfigError(f"{key}: not a valid {kind.__name__}: {env[key]!r}") from None
    kinds: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "str": str}
    for name, f in ServerSettings.__dataclass_fields__.items():  # TOML gives types; check them
        want = kinds.get(str(f.type))
        if name in body and want is not None and (not isinstance(body[name], want) or isinstance(body[name], bool)):
            raise ConfigError(f"config [server] {name}: expected a {f.type}, not {body[name]!r}")
    if "cors_origins" in body:
        origins = body["cors_origins"]
        if not isinstance(origins, list) or not all(isinstance(o, str) and o for o in origins):
            raise ConfigError('config [server] cors_origins: a list of origins, e.g. ["https://app.example.org"]')
        body["cors_origins"] = tuple(origins)
    try:
        server = ServerSettings(**body)
    except TypeError as e:
        raise ConfigError(f"config [server]: {e}") from e
    if server.log_format not in ("text", "json"):
        raise ConfigError(f"config [server] log_format: use text or json, not {server.log_format!r}")
    if server.auth not in ("auto", "required", "off"):
        raise ConfigError(f"config [server] auth: use auto, required or off, not {server.auth!r}")
    for name in ("max_body_bytes", "max_messages", "max_tokens", "max_agents", "max_n", "request_timeout_s"):
        if getattr(server, name) <= 0:
            raise ConfigError(f"config [server] {name}: must be positive")
    if server.max_running < 0 or server.max_queue < 0 or server.drain_timeout_s < 0:
        raise ConfigError("config [server] max_running, max_queue, drain_timeout_s: must not be negative")
    return server


def _store(body: Mapping[str, Any], env: Mapping[str, str]) -> StoreSettings:
    if not isinstance(body, Mapping) or set(body) - {"url"} or not isinstance(body.get("url", ""), str):
        raise ConfigError('config [store]: give url = "postgresql://USER:PASSWORD@HOST:5432/DB", or "" for SQLite')
    url = env.get("PONDER_STORE_URL") or body.get("url", "")
    if url and not url.startswith(("postgresql://", "postgres://")):  # never echo it: it may hold a password
        raise ConfigError("config [store] url (or PONDER_STORE_URL): a postgresql:// URL, or empty for SQLite")
    return StoreSettings(url)


def _tools(body: Mapping[str, Any], servers: Mapping[str, Any]) -> ToolSettings:
    unknown = set(body) - {"enabled", "max_steps", "code_execution", "fetch_hosts"}
    if unknown:
        raise ConfigError(f"config [tools]: unknown keys {sorted(unknown)}; "
                             "use enabled, max_steps, code_execution, fetch_hosts")  # fmt: skip
    mcp = {}
    for name, spec in servers.items():
        if not isinstance(spec, dict) or set(spec) - {"command", "url", "env", "timeout_s"}:
            raise ConfigError(f"config [mcp.{name}]: give command (a list) or url, and optionally env, timeout_s")
        command = spec.get("command", [])
        if isinstance(command, str):
            command = command.split()
        if bool(command) == bool(spec.get("url")):
            raise ConfigError(f"config [mcp.{name}]: give exactly one of command and url")
        mcp[name] = McpServer(
            name, tuple(command), spec.get("url", ""), spec.get("env"), float(spec.get("timeout_s", 60))
        )
    enabled = tuple(body.get("enabled", ()))
    for kind in enabled:
        if kind not in TOOL_KINDS or kind == "mcp":
            raise ConfigError(f"config [tools] enabled: unknown tool {kind!r}; use "
                              f"{', '.join(k for k in TOOL_KINDS if k != 'mcp')} (MCP servers are turned on per "
                              "request)")  # fmt: skip
    hosts = body.get("fetch_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError("config [tools] fetch_hosts: a list of host names")
    settings = ToolSettings(enabled, int(body.get("max_steps", 4)), bool(body.get("code_execution", False)),
                            tuple(hosts), mcp)  # fmt: skip
    if "code_interpreter" in enabled and not settings.code_execution:
        raise ConfigError("config [tools] enabled: code_interpreter needs code_execution = true")
    if "web_fetch" in enabled and not settings.fetch_hosts:
        raise ConfigError("config [tools] enabled: web_fetch needs fetch_hosts")
    if settings.max_steps < 1:
        raise ConfigError("config [tools] max_steps: at least 1")
    return settings


def _alias(name: str, body: Any) -> Alias:
    """`name = "model"`, or `[aliases.name]` with `model`, and optionally `mode` and `effort`."""
    if isinstance(body, str):
        body = {"model": body}
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise ConfigError(f'config [aliases] {name}: give the model it stands for (model = "...")')
    unknown = set(body) - {"model", "mode", "effort"}
    if unknown:
        raise ConfigError(f"config [aliases.{name}]: unknown keys {sorted(unknown)}; use model, mode, effort")
    alias = Alias(name, body["model"], body.get("mode"), body.get("effort"))
    if alias.mode not in (None, *MODE_NAMES):
        raise ConfigError(f"config [aliases.{name}] mode: unknown mode {alias.mode!r}")
    if alias.effort is not None and alias.effort not in EFFORT_BUDGETS:
        raise ConfigError(f"config [aliases.{name}] effort: use one of {', '.join(EFFORT_BUDGETS)}")
    return alias


def _check_modes(m: ModeSettings) -> None:
    if m.default not in MODE_NAMES:
        raise ConfigError(f"config [modes] default: unknown mode {m.default!r}")
    for key in ("effort", "agent_effort"):
        if getattr(m, key) not in EFFORT_BUDGETS:
            raise ConfigError(f"config [modes] {key}: use one of {', '.join(EFFORT_BUDGETS)}")
    if m.strategy not in ("auto", "attempts", "subtasks"):
        raise ConfigError("config [modes] strategy: use auto, attempts or subtasks")

"""The `ponder` command: serve | run | chat | pull | models | rm."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ponder import __version__
from ponder.backends.registry import Registry
from ponder.config import EFFORT_BUDGETS, EmbeddedSpec, RemoteSpec, Settings, load_settings
from ponder.errors import InvalidRequest, PonderError
from ponder.models import ModelStore
from ponder.modes import MODES
from ponder.progress import TerminalProgress
from ponder.terminal import Answerer, ModeChoice
from ponder.tools import KINDS, ToolHost
from ponder.types import Message, SamplingParams


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        settings = load_settings(
            Path(args.config) if args.config else None,
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
        )
        return int(args.func(args, settings) or 0)
    except PonderError as e:
        print(f"ponder: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# --- commands ----------------------------------------------------------------


def cmd_pull(args: argparse.Namespace, settings: Settings) -> int:
    from ponder.media import models as media_models

    if args.name in media_models.BUNDLES:
        path = media_models.pull(media_models.BUNDLES[args.name], settings.models_dir, settings.cache_dir,
                                 TerminalProgress(args.name))  # fmt: skip
        print(f"{args.name}: {path}")
        return 0
    store = _store(settings)
    path = store.pull(args.name, TerminalProgress(args.name))
    print(f"{args.name}: {path}")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    rows = [("NAME", "PULLED", "SIZE", "LICENSE", "DESCRIPTION")]
    for m in _store(settings).list_models():
        size = f"{m.size / 2**20:,.0f} MiB" if m.size else "?"
        rows.append((m.name, "yes" if m.present else "no", size, m.license, m.description))
    from ponder.media import models as media_models

    for b in media_models.BUNDLES.values():
        pulled = media_models.present(b, settings.models_dir)
        rows.append((b.name, "yes" if pulled else "no", "-", b.license, b.description))
    for name, spec in settings.models.items():
        where = getattr(spec, "source", "")
        if isinstance(spec, RemoteSpec):
            where = spec.base_url or ", ".join(spec.base_urls)
        rows.append((name, "-", "-", "-", f"{spec.backend}: {where}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return 0


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from ponder.tools import knowledge

    index = knowledge.Index(settings.data_dir / "knowledge.db")
    try:
        for path in args.paths:
            if not path.exists():
                print(f"ponder index: {path}: no such file or directory", file=sys.stderr)
                return 1
            r = index.add(path, args.collection, progress=lambda line: print(line, file=sys.stderr))
            print(f"{path}: {r.added} files indexed ({r.passages} passages), {r.unchanged} unchanged")
            for why in r.skipped:
                print(f"  skipped {why}", file=sys.stderr)
        counts = ", ".join(f"{name}: {n} files" for name, n in sorted(index.collections().items()))
        print(f"index {index.path}: {counts}")
    finally:
        index.close()
    return 0


def cmd_rm(args: argparse.Namespace, settings: Settings) -> int:
    path = _store(settings).remove(args.name)
    print(f"removed {args.name} ({path})")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from ponder.server.app import create_app

    settings, name = _choose_model(args.model, settings)
    _ensure_pulled(settings, name)
    _ensure_voice(settings)
    from ponder.server.guard import keys_required
    from ponder.server.observe import configure_logging
    from ponder.store import open_store

    store = open_store(settings)
    if keys_required(settings) and not any(k.revoked_at is None for k in store.api_keys()):
        print("ponder: API keys are required on this address, and there are none yet: create one with "
              "`ponder keys create NAME` (or set [server] auth)", file=sys.stderr)  # fmt: skip
    app = create_app(Registry(settings, _store(settings)), preload=name, store=store)
    auth = "API keys required" if keys_required(settings) else "no API keys (loopback)"
    print(f"ponder {__version__}: serving {name} on http://{settings.host}:{settings.port}/v1 ({auth}; "
          f"store: {store.where})", file=sys.stderr)  # fmt: skip
    # SIGTERM or Ctrl-C: stop taking connections, let the requests in flight finish
    # (streams included) for up to drain_timeout_s, then stop.
    # Ponder logs each request itself (with its id, as JSON if asked), so uvicorn's access log is off.
    configure_logging(settings.server.log_format == "json", args.log_level)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=False,
                log_config=None, timeout_graceful_shutdown=math.ceil(settings.server.drain_timeout_s))  # fmt: skip
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    import secrets
    import time
    import uuid

    from ponder.store import ApiKey, open_store

    store = open_store(settings)
    try:
        if args.action == "create":
            secret = "pdr-" + secrets.token_urlsafe(32)
            key = ApiKey(f"key_{uuid.uuid4().hex[:16]}", args.name, secret[:8], time.time(), None, args.rpm,
                         args.tokens_per_day, args.concurrency)  # fmt: skip
            store.add_key(key, secret)
            print(f"created {key.id} ({key.name}). The key, shown only this once:\n\n    {secret}\n", file=sys.stderr)
            print(secret)  # alone on stdout, for scripts: KEY=$(ponder keys create ci)
        elif args.action == "list":
            rows = [("ID", "NAME", "KEY", "CREATED", "STATUS", "LIMITS")]
            for k in store.api_keys():
                limits = [f"{k.rpm}/min" if k.rpm else "", f"{k.tokens_per_day:,} tokens/day" if k.tokens_per_day
                          else "", f"{k.concurrency} at once" if k.concurrency else ""]  # fmt: skip
                created = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created_at))
                rows.append((k.id, k.name, k.prefix + "…", created, "revoked" if k.revoked_at else "active",
                             ", ".join(x for x in limits if x) or "none"))  # fmt: skip
            widths = [max(len(r[i]) for r in rows) for i in range(5)]
            for row in rows:
                print("  ".join(c.ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5])
        else:
            if not store.revoke_key(args.id, time.time()):
                print(f"ponder keys revoke: no active key {args.id!r} (see `ponder keys list`)", file=sys.stderr)
                return 1
            print(f"revoked {args.id}; requests with it now get 401", file=sys.stderr)
    finally:
        store.close()
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    prompt = " ".join(args.prompt)
    piped = "" if sys.stdin.isatty() else sys.stdin.read().strip()
    if piped:
        prompt = f"{prompt}\n\n{piped}" if prompt else piped
    if not prompt.strip():
        print("ponder run: give a prompt, or pipe one in", file=sys.stderr)
        return 2
    messages = [Message("system", args.system)] if args.system else []
    messages.append(Message("user", prompt))
    return asyncio.run(_one_shot(args, settings, messages))


async def _one_shot(args: argparse.Namespace, settings: Settings, messages: list[Message]) -> int:
    answerer = await _answerer(args, settings)
    try:
        await answerer.answer(messages)
    finally:
        await answerer.close()
    return 0


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from ponder.repl import Repl

    async def go() -> int:
        answerer = await _answerer(args, settings)
        try:
            await Repl(answerer, args.system, settings.data_dir).run()
        finally:
            await answerer.close()
        return 0

    return asyncio.run(go())


def cmd_bench_audio(args: argparse.Namespace, settings: Settings) -> int:
    from ponder import bench_audio
    from ponder.media.audio import SpeechToText
    from ponder.media.perceive import Perception

    _ensure_voice(replace(settings, media=replace(settings.media, text_to_speech="")))
    threads = args.threads or settings.engine.n_threads
    path = Perception(settings).stt.model_path
    configs = {"fitted": SpeechToText(path, threads, fit=True), "full-window": SpeechToText(path, threads, fit=False)}
    rows, summary = bench_audio.run(configs)
    print(bench_audio.table(summary))
    bench_audio.write(rows, summary, args.json)
    return 0


class _InOrder(argparse.Action):
    """bench modes: -m/--model, --against and --against-label, kept in the order given,
    because a --model after an --against names that endpoint's model."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        namespace.in_order = [*(getattr(namespace, "in_order", None) or []), (self.dest, values)]


def _bench_targets(given: list[tuple[str, str]]) -> tuple[str | None, list[Any]]:
    """(Ponder's model, the --against endpoints) from the ordered options; each
    --against takes the --model and --against-label that follow it."""
    from ponder import bench_modes

    model: str | None = None
    targets: list[dict[str, str]] = []
    for dest, value in given:
        if dest == "against":
            targets.append({"url": value})
        elif not targets:
            if dest == "against_label":
                raise InvalidRequest("--against-label LABEL goes after the --against URL it names")
            if model is not None:
                raise InvalidRequest("give -m/--model once before the first --against (each --against URL "
                                     "takes the --model NAME after it)")  # fmt: skip
            model = value
        else:
            key = "model" if dest == "model" else "label"
            if key in targets[-1]:
                option = "--model" if key == "model" else "--against-label"
                raise InvalidRequest(f"--against {targets[-1]['url']} has two {option}s")
            targets[-1][key] = value
    missing = [t["url"] for t in targets if "model" not in t]
    if missing:
        raise InvalidRequest(f"--against {missing[0]} needs --model NAME after it (the endpoint's model)")
    return model, [bench_modes.Against(t["url"], t["model"], t.get("label", "")) for t in targets]


def cmd_bench_modes(args: argparse.Namespace, settings: Settings) -> int:
    from ponder import bench_modes

    model, against = _bench_targets(getattr(args, "in_order", None) or [])
    if args.tools:
        args.modes = [m for name in args.modes for m in (name, *((name + bench_modes.CODE,) if
                      bench_modes.is_mode(name) and not name.endswith(bench_modes.CODE) else ()))]  # fmt: skip
    unknown = {m for m in args.modes if not bench_modes.known(m)}
    if unknown:
        print(f"ponder bench modes: unknown mode config(s) {sorted(unknown)}; use "
              f"{[*bench_modes.BASELINES, *bench_modes.CONFIGS]} (a mode may end in {bench_modes.CODE})")  # fmt: skip
        return 2
    names = [*args.modes, *(a.name for a in against)]
    if len(set(names)) != len(names):
        print(f"ponder bench modes: two rows share a name in {names}; name endpoints with --against-label")
        return 2

    async def go() -> list[bench_modes.Row]:
        if not args.modes:  # only --against rows: no local model to load
            return await bench_modes.run(None, "", settings, [], args.limit, args.effort, args.agents, args.seed,
                                         args.json, data=args.data, against=against, cap=args.max_tokens,
                                         start=args.start)  # fmt: skip
        local, name = _choose_model(model, settings)
        _ensure_pulled(local, name)
        registry = Registry(local, _store(local))
        try:
            backend = await registry.get(name)
            return await bench_modes.run(backend, name, local, args.modes, args.limit, args.effort, args.agents,
                                         args.seed, args.json, data=args.data, against=against,
                                         cap=args.max_tokens, start=args.start)  # fmt: skip
        finally:
            await registry.close()

    rows = asyncio.run(go())
    summary = bench_modes.summarise(rows, names)
    print(bench_modes.table(summary))
    bench_modes.write(rows, summary, args.json, args.plot)
    return 0


def cmd_bench_tools(args: argparse.Namespace, settings: Settings) -> int:
    from ponder import bench_tools
    from ponder.evals import bfcl

    unknown = set(args.categories) - set(bfcl.CATEGORIES)
    if unknown:
        print(f"ponder bench tools: unknown categories {sorted(unknown)}; use {list(bfcl.CATEGORIES)}")
        return 2
    settings, name = _choose_model(args.model, settings)
    _ensure_pulled(settings, name)

    async def go() -> list[bench_tools.Row]:
        registry = Registry(settings, _store(settings))
        try:
            return await bench_tools.run(registry, name, tuple(args.categories), args.limit, args.json)
        finally:
            await registry.close()

    rows = asyncio.run(go())
    summary = bench_tools.summarise(rows)
    print(bench_tools.table(summary))
    bench_tools.write(rows, summary, args.json)
    return 0


# --- helpers -------------------------------------------------------------------


def _store(settings: Settings) -> ModelStore:
    return ModelStore(settings.models_dir, settings.cache_dir)


def _choose_model(model: str | None, settings: Settings) -> tuple[Settings, str]:
    """`--model` may be a served name, a catalogue name, a .gguf path or hf:... source."""
    model = model or settings.default_model
    if model.endswith(".gguf") and model not in settings.models:
        name = Path(model.split("/")[-1]).stem
        settings = settings.with_model(EmbeddedSpec(name=name, source=model))
        model = name
    return replace(settings, default_model=model), model


def _ensure_pulled(settings: Settings, name: str) -> None:
    spec = settings.models.get(name, EmbeddedSpec(name=name, source=name))
    if isinstance(spec, EmbeddedSpec):
        source = spec.source or name
        store = _store(settings)
        if not store.path_for(source).exists():  # present files are verified when loaded
            print(f"pulling {source} (first run only)", file=sys.stderr)
            store.pull(source, TerminalProgress(source))


def _ensure_voice(settings: Settings) -> None:
    """Pull the speech models `[media]` names, so the first voice request does not wait minutes."""
    from ponder.media import models as media_models

    for source in (settings.media.speech_to_text, settings.media.text_to_speech):
        bundle = media_models.BUNDLES.get(source)
        if bundle and not media_models.present(bundle, settings.models_dir):
            print(f"pulling {source} (first run only)", file=sys.stderr)
        if source:
            media_models.resolve(source, settings.models_dir, settings.cache_dir, TerminalProgress(source))


async def _answerer(args: argparse.Namespace, settings: Settings) -> Answerer:
    choice = ModeChoice(args.mode, args.effort, args.budget, args.agents, False if args.no_compression else None)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    if args.url:  # a running Ponder server: it runs the modes, we pass the choice along
        from ponder.backends.remote import RemoteBackend

        if args.tools:
            raise InvalidRequest("--tools runs the tools in-process; leave out --url (a server's clients name "
                                 "tools in their requests)", param="--tools")  # fmt: skip
        name = args.model or settings.default_model
        remote = RemoteBackend(args.url, name, os.environ.get("PONDER_API_KEY"), extra_body=choice.wire_fields())
        return Answerer(remote, name, params, settings.modes, choice, local_modes=False)
    settings, name = _choose_model(args.model, settings)
    _ensure_pulled(settings, name)
    backend = await Registry(settings, _store(settings)).get(name)
    host = ToolHost(settings)
    box = await host.toolbox([(i, _tool_entry(t)) for i, t in enumerate(args.tools or [])], where="--tools")
    return Answerer(backend, name, params, settings.modes, choice, toolbox=box, tools=host)


def _tool_entry(name: str) -> dict[str, Any]:
    """A --tools name as a request's tools entry: "calculator", "file_search:COLLECTION"
    or "mcp:SERVER"."""
    kind, _, label = name.partition(":")
    needs_label, may_label = kind == "mcp", kind in ("mcp", "file_search")
    if kind not in KINDS or (needs_label and not label) or (label and not may_label):
        known = ", ".join(k for k in KINDS if k != "mcp")
        raise InvalidRequest(f"--tools: unknown tool {name!r}; use {known}, file_search:COLLECTION or mcp:SERVER "
                             "(an [mcp.SERVER] in config)", param="--tools")  # fmt: skip
    if kind == "file_search" and label:
        return {"type": kind, "vector_store_ids": [label]}
    return {"type": kind, "server_label": label} if label else {"type": kind}


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ponder", description="Ponder: an open, self-hosted reasoning assistant.")
    p.add_argument("--version", action="version", version=f"ponder {__version__}")
    p.add_argument("--config", help="config file (default: $PONDER_CONFIG or ~/.config/ponder/config.toml)")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    s = sub.add_parser("serve", help="start the OpenAI-compatible server")
    s.add_argument("--model", help="model to serve by default: a name, a .gguf path or hf:OWNER/REPO/FILE.gguf")
    s.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (default 8000)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(func=cmd_serve)

    for name, func, text in (("run", cmd_run, "answer one prompt, streaming to the terminal"),
                             ("chat", cmd_chat, "chat in the terminal (/help for commands)")):  # fmt: skip
        c = sub.add_parser(name, help=text, description=text)
        if name == "run":
            c.add_argument("prompt", nargs="*", help="the prompt; stdin is read too when piped")
        c.add_argument("-m", "--model", help="model name, .gguf path or hf: source")
        c.add_argument("-s", "--system", help="system prompt")
        c.add_argument("--max-tokens", type=int)
        c.add_argument("--temperature", type=float)
        c.add_argument("--seed", type=int)
        c.add_argument("--mode", choices=MODES, help="auto, instant, thinking or contemplating (default: config, auto)")
        c.add_argument("--effort", choices=list(EFFORT_BUDGETS), help="reasoning effort, which sets the budget")
        c.add_argument("--budget", type=int, help="thinking budget in tokens")
        c.add_argument("--agents", type=int, help="contemplating: number of sub-agents")
        c.add_argument("--no-compression", action="store_true", help="think to the budget, without answer probes")
        c.add_argument("--tools", type=lambda v: [t.strip() for t in v.split(",") if t.strip()],
                       help="server-side tools, comma-separated: calculator, file_search, code_interpreter, "
                       "web_fetch, file_search:COLLECTION, mcp:SERVER (code and fetch need config)")  # fmt: skip
        c.add_argument("--url", help="talk to a running server (e.g. http://127.0.0.1:8000, or its /v1) instead")
        c.set_defaults(func=func)

    b = sub.add_parser("bench", help="benchmarks").add_subparsers(title="benchmarks", metavar="BENCH")
    c = b.add_parser("modes", help="accuracy, tokens and latency of each mode and of baselines, on the same items",
                     description="accuracy, tokens and latency of each mode, and of baselines beside them (bare: "
                     "the engine alone; sc4: 4 samples and a vote; --against: any OpenAI-compatible endpoint), on "
                     "the same items of a 100-item sample of GSM8K, TruthfulQA MC1 or HellaSwag")  # fmt: skip
    c.add_argument("-m", "--model", action=_InOrder, help="model (default: the configured default); after an "
                   "--against URL, that endpoint's model")  # fmt: skip
    c.add_argument("--data", choices=["gsm8k", "truthfulqa", "hellaswag"], default="gsm8k",
                   help="the sample: GSM8K (scored by the number), TruthfulQA MC1 or HellaSwag (by the "
                   "option's letter) (default: gsm8k)")  # fmt: skip
    c.add_argument("--limit", type=int, default=100, help="items to run (default: all 100)")
    c.add_argument("--start", type=int, default=0, help="skip the first N items (held out for fitting, say)")
    c.add_argument("--modes", type=lambda v: [m.strip() for m in v.split(",") if m.strip()],
                   default=["bare", "sc4", "instant", "auto", "thinking", "contemplating"],
                   help="comma-separated rows, run in this order: bare, sc4, instant, auto, thinking, "
                   "contemplating (the default), thinking-nocompress, default (no mode: the configured one); "
                   "NAME+code runs a mode with the code tool. An empty list runs only the --against rows")  # fmt: skip
    c.add_argument("--against", action=_InOrder, metavar="URL",
                   help="one more row: an OpenAI-compatible endpoint (base URL, .../v1), sent the user's message "
                   "alone at temperature 0; give its model with --model NAME after it. Repeatable. A key for it, "
                   "if it needs one, goes in PONDER_AGAINST_API_KEY")  # fmt: skip
    c.add_argument("--against-label", action=_InOrder, metavar="LABEL",
                   help="the row's name for the --against before it (default: MODEL@HOST)")  # fmt: skip
    c.add_argument("--effort", choices=list(EFFORT_BUDGETS), help="reasoning effort (default: config)")
    c.add_argument("--agents", type=int, help="contemplating sub-agents (default: config)")
    c.add_argument("--max-tokens", type=int, default=512, help="the cap on every answer, in tokens (default: 512)")
    c.add_argument("--seed", type=int, default=1234)
    c.add_argument("--json", type=Path, help="write per-item results and the summary here (and resume from it)")
    c.add_argument("--plot", type=Path, help="write a PNG of accuracy against tokens per row, with the Pareto "
                   "frontier")  # fmt: skip
    c.add_argument("--tools", action="store_true", help="run each mode with the code tool off and on "
                   "(NAME+code; a mode may also be named so in --modes)")  # fmt: skip
    c.set_defaults(func=cmd_bench_modes)

    c = b.add_parser("audio", help="speech to text: word error rate and real-time factor on LibriVox clips",
                     description="speech to text: word error rate and real-time factor on the five LibriVox "
                     "clips of Debian's pocketsphinx-testdata")  # fmt: skip
    c.add_argument("--threads", type=int, help="CPU threads for Whisper (default: [engine] n_threads)")
    c.add_argument("--json", type=Path, help="write per-clip results and the summary here")
    c.set_defaults(func=cmd_bench_audio)

    c = b.add_parser("tools", help="tool-calling accuracy on BFCL v4, through the server",
                     description="tool-calling accuracy on BFCL v4 (AST match), through the server")  # fmt: skip
    c.add_argument("-m", "--model", help="model (default: the configured default)")
    c.add_argument("--categories", type=lambda v: v.split(","),
                   default=["simple_python", "multiple", "parallel", "irrelevance"],
                   help="comma-separated: simple_python, multiple, parallel, irrelevance")  # fmt: skip
    c.add_argument("--limit", type=int, help="the first N items of each category (default: all)")
    c.add_argument("--json", type=Path, help="write per-item results and the summary here")
    c.set_defaults(func=cmd_bench_tools)

    c = sub.add_parser(
        "pull", help="download, join and verify a model", description="download, join and verify a model"
    )
    c.add_argument("name", help="catalogue name (see `ponder models`: chat models, whisper-base, joe) or "
                   "hf:OWNER/REPO/FILE.gguf")  # fmt: skip
    c.set_defaults(func=cmd_pull)
    c = sub.add_parser("index", help="index documents for knowledge search (the file_search tool)",
                       description="index documents for knowledge search (the file_search tool); a changed file "
                       "is indexed again, an unchanged one skipped")  # fmt: skip
    c.add_argument("paths", nargs="+", type=Path, help="files or directories")
    c.add_argument("--collection", default="default", help="the collection to add to (file_search's "
                   "vector_store_ids name it; default: default)")  # fmt: skip
    c.set_defaults(func=cmd_index)
    keys = sub.add_parser(
        "keys",
        help="API keys: create, list, revoke",
        description="API keys: create, list, "
        "revoke. Keys are required when the server listens beyond loopback ([server] auth).",
    )
    keys.set_defaults(func=lambda args, settings: keys.print_help())
    k = keys.add_subparsers(title="actions", metavar="ACTION")
    c = k.add_parser("create", help="create a key; it is printed once and stored only as a hash")
    c.add_argument("name", help="what the key is for (a person, an app)")
    c.add_argument("--rpm", type=_positive, help="requests per minute (default: no limit)")
    c.add_argument("--tokens-per-day", type=_positive, help="prompt and completion tokens per UTC day")
    c.add_argument("--concurrency", type=_positive, help="requests at once")
    c.set_defaults(func=cmd_keys, action="create")
    c = k.add_parser("list", help="list keys (never their secrets)")
    c.set_defaults(func=cmd_keys, action="list")
    c = k.add_parser("revoke", help="revoke a key at once, by its id")
    c.add_argument("id", help="the key's id (key_…), from `ponder keys list`")
    c.set_defaults(func=cmd_keys, action="revoke")
    c = sub.add_parser("models", help="list models: catalogue, pulled, configured")
    c.set_defaults(func=cmd_models)
    c = sub.add_parser("rm", help="delete a pulled model")
    c.add_argument("name")
    c.set_defaults(func=cmd_rm)
    return p


if __name__ == "__main__":
    sys.exit(main())

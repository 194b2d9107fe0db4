"""`ponder bench`: modes (accuracy and cost beside baselines), audio and tools."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from ponder.backends.registry import Registry
from ponder.cli_models import choose_model, ensure_pulled, ensure_voice, model_store
from ponder.config import EFFORT_BUDGETS, Settings
from ponder.errors import InvalidRequest


def add_parsers(sub: Any) -> None:
    """The `bench` command and its benchmarks, under the top-level subparsers `sub`."""
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


def cmd_bench_audio(args: argparse.Namespace, settings: Settings) -> int:
    from ponder import bench_audio
    from ponder.media.audio import SpeechToText
    from ponder.media.perceive import Perception

    ensure_voice(replace(settings, media=replace(settings.media, text_to_speech="")))
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
        local, name = choose_model(model, settings)
        ensure_pulled(local, name)
        registry = Registry(local, model_store(local))
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
    settings, name = choose_model(args.model, settings)
    ensure_pulled(settings, name)

    async def go() -> list[bench_tools.Row]:
        registry = Registry(settings, model_store(settings))
        try:
            return await bench_tools.run(registry, name, tuple(args.categories), args.limit, args.json)
        finally:
            await registry.close()

    rows = asyncio.run(go())
    summary = bench_tools.summarise(rows)
    print(bench_tools.table(summary))
    bench_tools.write(rows, summary, args.json)
    return 0

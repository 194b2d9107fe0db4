"""What Ponder's server costs over llama-cpp-python, and what prefix reuse saves.

    .venv/bin/python bench/overhead.py [--model qwen2.5-coder-1.5b] [--rounds 3]

1. Decode tokens/s streamed through `ponder serve` vs `Llama.create_chat_completion`
   called directly in this process, same GGUF, prompt, threads and greedy settings.
   Rounds alternate (direct, server, direct, ...) so both see the same machine noise;
   the ratio of medians is reported. Goal: >= 0.95.
2. Time to first token on the second turn of a ~1,500-token conversation vs the
   first turn, through the server. Goal: <= 0.5.

Both ratios come from one run. Prints progress as it goes, a table at the end.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import free_port, ponder_env, start, stop  # noqa: E402

from ponder.config import load_settings  # noqa: E402
from ponder.models import ModelStore  # noqa: E402
from ponder.modes.prompts import load  # noqa: E402

DECODE_PROMPT = [{"role": "user", "content": "Write a Python class for a bank account with deposit, withdraw, "
                  "transfer and a transaction history, with docstrings and type hints."}]  # fmt: skip
MAX_TOKENS = 160


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def as_instant(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The messages as the server's Instant mode hands them to the model (its note on
    the last user turn), so both sides decode the very same prompt."""
    note = load("instant")["user_note"]
    return [*messages[:-1], {**messages[-1], "content": f"{messages[-1]['content']}\n\n{note}"}]


def stream_direct(llm: Any, messages: list[dict[str, str]], max_tokens: int) -> dict[str, float]:
    messages = as_instant(messages)
    t0 = time.perf_counter()
    times = []
    for chunk in llm.create_chat_completion(messages, stream=True, temperature=0, max_tokens=max_tokens):
        if chunk["choices"][0]["delta"].get("content"):
            times.append(time.perf_counter())
    return _rates(t0, times)


def stream_server(url: str, model: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    body = {"model": model, "messages": messages, "stream": True, "temperature": 0, "max_tokens": max_tokens,
            "stream_options": {"include_usage": True}}  # fmt: skip
    t0 = time.perf_counter()
    times, text, usage = [], [], {}
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=600) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
                text.append(chunk["choices"][0]["delta"]["content"])
    return {**_rates(t0, times), "text": "".join(text), "usage": usage}


def _rates(t0: float, times: list[float]) -> dict[str, float]:
    n = len(times)
    return {"ttft_s": times[0] - t0, "tokens": n, "decode_tps": (n - 1) / (times[-1] - times[0])}


def long_context(i: int) -> str:
    """~1,400 tokens of real code (a stdlib module), a different one per round."""
    import difflib
    import json.decoder
    import textwrap

    module = [json.decoder, textwrap, difflib][i % 3]
    return inspect.getsource(module)[:5200]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    settings = load_settings()
    store = ModelStore(settings.models_dir, settings.cache_dir)
    path = store.pull(args.model, lambda stage, done, total: None)
    n_ctx = 4096

    port = free_port()
    log(f"starting ponder serve on {args.model} (port {port})")
    env = ponder_env(settings.data_dir, PONDER_N_CTX=str(n_ctx), PONDER_THREADS=str(args.threads))
    cmd = [str(Path(sys.executable).parent / "ponder"), "serve", "--model", args.model, "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    logfile = ROOT / "bench" / "out" / "overhead-server.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    server = start(cmd, env, f"http://127.0.0.1:{port}/health", logfile)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        import llama_cpp

        log("loading the same GGUF in-process for the direct baseline")
        llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=args.threads, n_threads_batch=args.threads,
                              n_batch=512, n_ubatch=512, verbose=False)  # fmt: skip
        stream_direct(llm, DECODE_PROMPT, 8)  # warm both sides up
        stream_server(url, args.model, DECODE_PROMPT, 8)

        direct, served = [], []
        for r in range(args.rounds):
            d = stream_direct(llm, DECODE_PROMPT, MAX_TOKENS)
            s = stream_server(url, args.model, DECODE_PROMPT, MAX_TOKENS)
            direct.append(d["decode_tps"])
            served.append(s["decode_tps"])
            log(f"decode round {r + 1}/{args.rounds}: direct {d['decode_tps']:.1f} tok/s ({d['tokens']} tok), "
                f"server {s['decode_tps']:.1f} tok/s ({s['tokens']} tok)")  # fmt: skip
        del llm

        first, second = [], []
        for r in range(args.rounds):
            ask = f"Review this module:\n\n{long_context(r)}\n\nSummarise it briefly."
            convo = [
                {"role": "system", "content": "You are a careful code reviewer."},
                {"role": "user", "content": ask},
            ]
            t1 = stream_server(url, args.model, convo, 48)
            convo += [{"role": "assistant", "content": t1["text"]},
                      {"role": "user", "content": "Which function would you test first, and why?"}]  # fmt: skip
            t2 = stream_server(url, args.model, convo, 48)
            first.append(t1["ttft_s"])
            second.append(t2["ttft_s"])
            log(f"ttft round {r + 1}/{args.rounds}: turn 1 {t1['ttft_s']:.2f}s ({t1['usage']['prompt_tokens']} prompt "
                f"tokens), turn 2 {t2['ttft_s']:.2f}s ({t2['usage']['prompt_tokens']} prompt tokens, "
                f"{t2['usage']['prompt_tokens_details']['cached_tokens']} cached)")  # fmt: skip
    finally:
        stop(server)

    result = {
        "model": args.model,
        "threads": args.threads,
        "decode_tps_direct_median": statistics.median(direct),
        "decode_tps_server_median": statistics.median(served),
        "decode_ratio_server_over_direct": statistics.median(served) / statistics.median(direct),
        "ttft_turn1_median_s": statistics.median(first),
        "ttft_turn2_median_s": statistics.median(second),
        "ttft_ratio_turn2_over_turn1": statistics.median(second) / statistics.median(first),
    }
    print(f"\n{'metric':<42}{'value':>10}  goal")
    print(f"{'decode tok/s, llama-cpp-python direct':<42}{result['decode_tps_direct_median']:>10.1f}")
    print(f"{'decode tok/s, ponder serve (streaming)':<42}{result['decode_tps_server_median']:>10.1f}")
    print(f"{'ratio server / direct':<42}{result['decode_ratio_server_over_direct']:>10.3f}  >= 0.95")
    print(f"{'TTFT turn 1 (~1,500-token prompt), s':<42}{result['ttft_turn1_median_s']:>10.2f}")
    print(f"{'TTFT turn 2, s':<42}{result['ttft_turn2_median_s']:>10.2f}")
    print(f"{'ratio turn 2 / turn 1':<42}{result['ttft_ratio_turn2_over_turn1']:>10.3f}  <= 0.5")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

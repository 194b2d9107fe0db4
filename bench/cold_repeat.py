"""Does one prompt, sent cold, give the same greedy text every time? (`Backend.forget`)

Each named GSM8K item is sent RUNS times to the default model through the embedded
backend, greedy, the prompt cache dropped before each run; then once more with the
cache warm (its prompt served from the cache but for its last token). Prints whether
the cold runs' texts are identical, and whether the warm one matches them.

    .venv/bin/python bench/cold_repeat.py gsm8k-test-0255 gsm8k-test-0326 gsm8k-test-0429
"""

from __future__ import annotations

import argparse
import asyncio

from ponder.backends.registry import Registry
from ponder.cli_models import choose_model as _choose_model
from ponder.cli_models import model_store as _store
from ponder.config import load_settings
from ponder.evals import datasets
from ponder.types import ChatRequest, Message, SamplingParams, collect


async def main(ids: list[str], runs: int) -> None:
    settings, name = _choose_model(None, load_settings())
    registry = Registry(settings, _store(settings))
    backend = await registry.get(name)
    items = {i.id: i for i in datasets.load("gsm8k", settings.cache_dir, lambda *a: None)}
    try:
        for item_id in ids:
            req = ChatRequest(name, (Message("user", items[item_id].question),),
                              SamplingParams(temperature=0.0, max_tokens=512, seed=0))  # fmt: skip
            cold = []
            for _ in range(runs):
                await backend.forget()
                cold.append((await collect(backend.stream(req))).text)
            warm = (await collect(backend.stream(req))).text  # its prompt now comes from the cache
            print(f"{item_id}: {runs} cold runs identical: {len(set(cold)) == 1}; warm run the same: {warm == cold[0]}",
                  flush=True)  # fmt: skip
    finally:
        await registry.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ids", nargs="+")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.ids, args.runs))

"""Decode speed of the embedded engine with OpenMP's default (spinning) waits or passive ones.

    .venv/bin/python bench/omp_wait.py                       # the default
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/omp_wait.py

One request, then four at once, each 100 tokens (ignore_eos) on the default model;
prints aggregate tokens per second. Run it once each way, with nothing else running,
and once each way beside a busy process (`python3 -c 'while True: pass' &`).
"""

from __future__ import annotations

import asyncio
import os
import time

from ponder.backends.embedded import EmbeddedBackend
from ponder.config import load_settings
from ponder.models import ModelStore
from ponder.types import ChatRequest, Message, SamplingParams, collect

QUESTION = "Janet has 3 apples and buys 5 more. She gives 2 to Tom. How many does she have? Explain."


async def main() -> None:
    settings = load_settings()
    path = ModelStore(settings.data_dir / "models", settings.cache_dir).resolve(settings.default_model)
    backend = EmbeddedBackend(path, settings.engine)
    await backend.load()
    try:
        for n in (1, 4):
            t0 = time.perf_counter()
            params = [SamplingParams(temperature=0.7, seed=i, max_tokens=100, ignore_eos=True) for i in range(n)]
            done = await asyncio.gather(
                *(collect(backend.stream(ChatRequest("m", (Message("user", QUESTION),), p))) for p in params)
            )
            tokens = sum(d.usage.completion_tokens for d in done)
            rate = tokens / (time.perf_counter() - t0)
            print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')} sequences={n}: {rate:.1f} tok/s")
    finally:
        await backend.close()


if __name__ == "__main__":
    asyncio.run(main())

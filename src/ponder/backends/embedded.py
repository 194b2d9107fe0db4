"""The embedded backend: a `LlamaEngine` on its own worker thread.

llama.cpp contexts are not thread-safe, so one thread owns the engine and runs one
request at a time; others wait their turn in the executor's queue. Events cross
back to the event loop with `call_soon_threadsafe`, so the loop never blocks on
model compute. When the consumer goes away (client disconnect), a
`threading.Event` tells the decode loop to stop at the next token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ponder.backends.base import Backend, Capabilities
from ponder.config import EngineSettings
from ponder.engine.llama import LlamaEngine
from ponder.types import ChatRequest, Done, Event, SamplingParams

_END = object()


class EmbeddedBackend(Backend):
    capabilities = Capabilities(prefill=True)

    def __init__(self, path: Path, settings: EngineSettings, n_ctx: int | None = None):
        self.path = path
        self.settings = settings
        self.n_ctx = n_ctx or settings.n_ctx
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ponder-engine")
        self._engine: LlamaEngine | None = None
        self._load_lock = asyncio.Lock()
        self._jobs: set[asyncio.Future[None]] = set()

    @property
    def busy(self) -> int:
        return len(self._jobs)

    @property
    def context_length(self) -> int | None:  # type: ignore[override]
        return self._engine.n_ctx if self._engine else self.n_ctx

    async def load(self) -> LlamaEngine:
        async with self._load_lock:
            if self._engine is None:
                s = self.settings
                defaults = SamplingParams(temperature=s.temperature, top_p=s.top_p)
                self._engine = await asyncio.get_running_loop().run_in_executor(
                    self._executor,
                    lambda: LlamaEngine(self.path, n_ctx=self.n_ctx, n_threads=s.n_threads,
                                        n_batch=s.n_batch, n_ubatch=s.n_ubatch, defaults=defaults),
                )  # fmt: skip
            return self._engine

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        engine = await self.load()
        # Tokenizing reads the vocabulary only, so it may run beside a generation.
        tokens = await asyncio.to_thread(engine.prompt_tokens, request.messages, request.prefill)
        engine.check_fits(len(tokens), request.params.max_tokens)

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def put(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def job() -> None:
            try:
                if not cancel.is_set():  # the client may have left while we queued
                    engine.generate(tokens, request.params, cancel, put)
            except BaseException as e:  # handed to the consumer, which re-raises it
                put(e)
            finally:
                put(_END)

        future = loop.run_in_executor(self._executor, job)
        self._jobs.add(future)
        future.add_done_callback(self._jobs.discard)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
                if isinstance(item, Done):
                    break
        finally:
            cancel.set()  # the job stops at its next token and removes itself from _jobs

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._engine = None

"""The embedded backend: a llama.cpp engine driven from worker threads.

With `n_seq_max > 1` (the default, 4) it is the `BatchedEngine`: each request's
`generate()` blocks one of `n_seq_max` worker threads while the engine's scheduler
decodes all of them in one batch per step. With `n_seq_max = 1` it is the simple
`LlamaEngine`, one request at a time. Events cross back to the event loop with
`call_soon_threadsafe`, so the loop never blocks on model compute. When the
consumer goes away (client disconnect), a `threading.Event` tells the decode loop
to stop that request at its next token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from typing import Any

from ponder.backends.base import Backend, Capabilities, threaded
from ponder.config import EngineSettings
from ponder.engine.batched import BatchedEngine
from ponder.engine.common import common_prefix
from ponder.engine.llama import LlamaEngine
from ponder.formats import structured, toolcalls
from ponder.types import ChatRequest, Done, Event, Message, SamplingParams, Tool


class EmbeddedBackend(Backend):
    def __init__(self, path: Path, settings: EngineSettings, n_ctx: int | None = None):
        self.path = path
        self.settings = settings
        self.n_ctx = n_ctx or settings.n_ctx
        self.capabilities = Capabilities(prefill=True, batching=settings.n_seq_max > 1, scoring=True)
        workers = max(1, settings.n_seq_max)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ponder-engine")
        self._engine: LlamaEngine | BatchedEngine | None = None
        self._load_lock = asyncio.Lock()
        self._jobs: set[asyncio.Future[Any]] = set()

    @property
    def busy(self) -> int:
        return len(self._jobs)

    @property
    def capacity(self) -> int:
        return max(1, self.settings.n_seq_max)

    async def load(self) -> LlamaEngine | BatchedEngine:
        async with self._load_lock:
            if self._engine is None:
                self._engine = await asyncio.get_running_loop().run_in_executor(self._executor, self._make_engine)
            return self._engine

    def _make_engine(self) -> LlamaEngine | BatchedEngine:
        s = self.settings
        defaults = SamplingParams(temperature=s.temperature, top_p=s.top_p)
        if s.n_seq_max <= 1:
            return LlamaEngine(self.path, n_ctx=self.n_ctx, n_threads=s.n_threads, n_batch=s.n_batch,
                               n_ubatch=s.n_ubatch, defaults=defaults)  # fmt: skip
        # A unified KV cache with flash attention was the fastest of the four layouts
        # bench/batching.py tried on 2 cores (docs/benchmarks.md).
        return BatchedEngine(self.path, n_ctx=self.n_ctx, n_threads=s.n_threads, n_seq_max=s.n_seq_max,
                             n_batch=max(s.n_batch, s.n_seq_max), n_ubatch=s.n_ubatch, defaults=defaults,
                             kv_unified=True, flash_attn=True)  # fmt: skip

    def check(self, request: ChatRequest) -> None:
        if request.params.response_format is not None:
            structured.gbnf(request.params.response_format)  # a schema the grammar converter cannot take
        if request.tools and (request.tool_choice == "required" or request.tool_name):
            toolcalls.forced_grammar(request.tools, "hermes", request.tool_name, request.parallel_tool_calls)

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> int:
        engine = await self.load()
        return len(await asyncio.to_thread(engine.prompt_tokens, messages, "", tuple(tools)))

    async def score(self, request: ChatRequest) -> tuple[float, ...]:
        engine = await self.load()
        tokens = await asyncio.to_thread(engine.prompt_tokens, request.messages, request.prefill, request.tools)
        context = await asyncio.to_thread(engine.prompt_tokens, request.messages, "", request.tools)
        cancel = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, engine.score, tokens, common_prefix(tokens, context), cancel
        )
        self._jobs.add(future)
        future.add_done_callback(self._ended)
        try:
            return tuple(await asyncio.shield(future))
        finally:
            cancel.set()  # a caller that went away stops the work; a finished one is untouched

    def _ended(self, future: asyncio.Future[list[float]]) -> None:
        """A scoring job is over. Its error is read here: a caller that went away (a
        cancelled request, Ctrl-C on a bench) no longer waits for it, and asyncio would
        print the engine's EngineClosed as "never retrieved" at shutdown."""
        self._jobs.discard(future)
        if not future.cancelled():
            future.exception()

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        engine = await self.load()
        calls = bool(request.tools) and request.tool_choice != "none"
        if calls and (request.tool_choice == "required" or request.tool_name):  # constrained: calls only
            grammar = toolcalls.forced_grammar(request.tools, engine.template.tool_family, request.tool_name,
                                               request.parallel_tool_calls)  # fmt: skip
            request = replace(request, params=replace(request.params, grammar=grammar))
        events = self._generate(engine, request)
        if calls:
            events = toolcalls.split_calls(events, engine.template.tool_family, request.tools)
        async with aclosing(events):
            async for event in events:
                yield event

    async def _generate(self, engine: LlamaEngine | BatchedEngine, request: ChatRequest) -> AsyncGenerator[Event, None]:
        # Tokenizing reads the vocabulary only, so it may run beside a generation.
        tokens = await asyncio.to_thread(engine.prompt_tokens, request.messages, request.prefill, request.tools)
        engine.check_fits(len(tokens), request.params.max_tokens)

        def track(future: asyncio.Future[None]) -> None:  # a job removes itself from _jobs when it ends
            self._jobs.add(future)
            future.add_done_callback(self._jobs.discard)

        def work(cancel: threading.Event, put: Callable[[object], None]) -> None:
            engine.generate(tokens, request.params, cancel, put)

        async with aclosing(threaded(self._executor, work, track)) as items:
            async for item in items:
                yield item  # type: ignore[misc]
                if isinstance(item, Done):
                    break

    async def forget(self) -> None:
        if self._engine is not None:
            await asyncio.to_thread(self._engine.forget)

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if isinstance(engine, BatchedEngine):
            engine.close()  # running generate() calls end with EngineClosed
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

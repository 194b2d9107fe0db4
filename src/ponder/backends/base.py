"""The backend seam: everything that can answer a `ChatRequest`.

A backend turns one request into a stream of events and ends it with exactly one
`Done`. Request problems it can detect up front (too long a context, an unknown
upstream model) are raised as `PonderError`s *before* the first event, so the
server can still answer with a proper HTTP status. Closing the iterator early
(`aclose`, or the consumer being cancelled) stops the work underneath.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from urllib.parse import urlsplit

from ponder.errors import Unsupported
from ponder.types import ChatRequest, Event, Message, Tool


@dataclass(frozen=True)
class Capabilities:
    vision: bool = False  # takes images as they are (otherwise they are described: ponder.media.perceive)
    audio: bool = False  # takes audio as it is (otherwise it is transcribed)
    tools: bool = False
    native_reasoning: bool = False
    batching: bool = False
    prefill: bool = False  # can continue a partly written assistant reply (ChatRequest.prefill)
    thinking_budget: bool = False  # turns thinking on and off and caps it itself (ChatRequest.thinking)
    scoring: bool = False  # gives the log-probabilities of a given reply (`Backend.score`)


class Backend(ABC):
    capabilities = Capabilities()

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        """Yield events for `request`, ending with one `Done`."""

    def check(self, request: ChatRequest) -> None:
        """Raise a `PonderError` now for what this backend will refuse later in a run
        (a mode may send its first call long before the one that would fail)."""

    async def score(self, request: ChatRequest) -> tuple[float, ...]:
        """The log-probability of each token of `request.prefill`, the start of a reply,
        after `request.messages`: how likely the model finds that reply. Nothing is
        generated. Only where `capabilities.scoring` is set."""
        raise Unsupported("this backend cannot score a reply: its engine returns no prompt log-probabilities")

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> int:
        """The prompt tokens `messages` (with `tools` on offer) take on this backend's model."""
        raise Unsupported("this backend cannot count tokens: its engine exposes no tokenizer to Ponder")

    @property
    def busy(self) -> int:
        """Requests running or queued right now (for /health)."""
        return 0

    @property
    def capacity(self) -> int:
        """Requests it serves at once; the server queues (boundedly) the rest."""
        return 1

    async def healthy(self, timeout: float = 5.0) -> bool:
        """Whether it can take requests now (a pool asks each replica)."""
        return True

    async def forget(self) -> None:
        """Drop the prompt cache it keeps here, once no request is running, so the next
        prompt is computed from scratch (`ponder bench modes` starts every row so). A
        backend that keeps none here (a remote engine keeps its own) has nothing to do."""

    async def close(self) -> None:
        """Release what the backend holds (threads, connections, model memory)."""


def api_base(url: str) -> str:
    """An OpenAI-compatible server's API base: `url` as given, or with /v1 added when
    it names only the server (http://host:8000, as people type it): vLLM, SGLang,
    llama-server and Ponder all serve the API there."""
    url = url.rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


def public_url(url: str) -> str:
    """`url` without a user or password in it (it is shown in /health and /metrics)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.split('@', 1)[1]}" if sep and "@" in rest.split("/", 1)[0] else url


_END = object()


async def threaded(
    executor: Executor,
    work: Callable[[threading.Event, Callable[[object], None]], None],
    track: Callable[[asyncio.Future[None]], None] | None = None,
) -> AsyncGenerator[object, None]:
    """Run `work(cancel, put)` on one of `executor`'s threads and yield what it puts,
    as it puts it; an exception it raises is raised here. Closing the generator (the
    client left) sets `cancel`, which the work checks at each step. `track` gets the
    running job's future."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    cancel = threading.Event()

    def put(item: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def job() -> None:
        try:
            if not cancel.is_set():  # the client may have left while this waited its turn
                work(cancel, put)
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(e)
        finally:
            put(_END)

    future = loop.run_in_executor(executor, job)
    if track is not None:
        track(future)
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancel.set()  # the work stops at its next step

"""The backend seam: everything that can answer a `ChatRequest`.

A backend turns one request into a stream of events and ends it with exactly one
`Done`. Request problems it can detect up front (too long a context, an unknown
upstream model) are raised as `PonderError`s *before* the first event, so the
server can still answer with a proper HTTP status. Closing the iterator early
(`aclose`, or the consumer being cancelled) stops the work underneath.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

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


class Backend(ABC):
    capabilities = Capabilities()

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        """Yield events for `request`, ending with one `Done`."""

    def check(self, request: ChatRequest) -> None:
        """Raise a `PonderError` now for what this backend will refuse later in a run
        (a mode may send its first call long before the one that would fail)."""

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> int:
        """The prompt tokens `messages` (with `tools` on offer) take on this backend's model."""
        raise Unsupported("this backend cannot count tokens: its engine exposes no tokenizer to Ponder")

    @property
    def busy(self) -> int:
        """Requests running or queued right now (for /health)."""
        return 0

    async def close(self) -> None:
        """Release what the backend holds (threads, connections, model memory)."""

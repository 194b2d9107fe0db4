"""A local vision-language model: a GGUF with its multimodal projector (mmproj),
run by llama-cpp-python's multimodal chat handlers, which see images natively.

    [models.eye]
    source = "/models/Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf"
    mmproj = "/models/mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf"
    chat_handler = "mtmd"          # the GGUF's own chat template (default), or a
                                   # llama-cpp-python handler: llava-1.5, qwen2.5-vl, ...

It answers one request at a time through `Llama.create_chat_completion`, in a
worker thread; a client that leaves stops it at its next token. Reasoning and tool
calls are not parsed here: a VLM answers in text.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path
from typing import Any

from ponder.backends.base import Backend, Capabilities, threaded
from ponder.config import EngineSettings
from ponder.errors import ContextLengthExceeded, ModelSourceError
from ponder.formats.openai import message_json
from ponder.types import ChatRequest, Done, Event, FinishReason, TextDelta, Usage

# chat_handler names -> llama_cpp.llama_chat_format classes
HANDLERS = {
    "mtmd": "MTMDChatHandler", "llava-1.5": "Llava15ChatHandler", "llava-1.6": "Llava16ChatHandler",
    "moondream": "MoondreamChatHandler", "nanollava": "NanoLlavaChatHandler", "minicpm-v-2.6": "MiniCPMv26ChatHandler",
    "qwen2.5-vl": "Qwen25VLChatHandler", "llama-3-vision-alpha": "Llama3VisionAlphaChatHandler",
}  # fmt: skip


def chat_handler(name: str, mmproj: Path) -> Any:
    """The llama-cpp-python chat handler `name`, loading the projector at `mmproj`."""
    from llama_cpp import llama_chat_format

    if name not in HANDLERS:
        raise ModelSourceError(f"unknown chat_handler {name!r}: use one of {', '.join(HANDLERS)}")
    if not mmproj.is_file():
        raise ModelSourceError(f"the multimodal projector {mmproj} does not exist (mmproj in the model's config)")
    return getattr(llama_chat_format, HANDLERS[name])(clip_model_path=str(mmproj), verbose=False)


class VisionBackend(Backend):
    def __init__(self, path: Path, mmproj: Path, settings: EngineSettings, handler: str = "mtmd",
                 n_ctx: int | None = None):  # fmt: skip
        self.capabilities = Capabilities(vision=True)
        self.path, self.mmproj, self.settings, self.handler = path, mmproj, settings, handler
        self.n_ctx = n_ctx or settings.n_ctx
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ponder-vision")
        self._llama: Any = None
        self._load_lock = asyncio.Lock()

    async def load(self) -> Any:
        async with self._load_lock:
            if self._llama is None:
                self._llama = await asyncio.get_running_loop().run_in_executor(self._executor, self._make)
            return self._llama

    def _make(self) -> Any:
        from llama_cpp import Llama

        handler = chat_handler(self.handler, self.mmproj)
        s = self.settings
        llama = Llama(model_path=str(self.path), chat_handler=handler, n_ctx=self.n_ctx, n_threads=s.n_threads,
                      n_batch=s.n_batch, verbose=False)  # fmt: skip
        try:  # the projector loads beside the model; a wrong file fails here, not mid-answer
            init = getattr(handler, "_init_mtmd_context", None)
            if init is not None:
                init(llama)
        except (ValueError, OSError) as e:
            llama.close()
            raise ModelSourceError(
                f"could not load {self.mmproj} as the multimodal projector of {self.path}: {e}"
            ) from e
        return llama

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        llama = await self.load()
        p = request.params
        kwargs = {"messages": [message_json(m) for m in request.messages], "stream": True,
                  "max_tokens": p.max_tokens, "temperature": p.temperature if p.temperature is not None
                  else self.settings.temperature, "top_p": p.top_p or self.settings.top_p, "seed": p.seed,
                  "stop": list(p.stop) or None}  # fmt: skip

        def work(cancel: threading.Event, put: Callable[[object], None]) -> None:
            for chunk in llama.create_chat_completion(**kwargs):
                put(chunk)
                if cancel.is_set():
                    break

        finish: FinishReason = "stop"
        pieces = 0
        try:
            async with aclosing(threaded(self._executor, work)) as chunks:
                async for chunk in chunks:
                    choice = (chunk.get("choices") or [{}])[0]  # type: ignore[attr-defined]
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        pieces += 1
                        yield TextDelta(text)
                    if choice.get("finish_reason") == "length":
                        finish = "length"
        except ValueError as e:
            if "context window" not in str(e):
                raise
            why = f"The request does not fit the model's context of {self.n_ctx} tokens (images take hundreds)"
            raise ContextLengthExceeded(f"{why}: {e}", param="messages") from e
        yield Done(finish, Usage(prompt_tokens=0, completion_tokens=pieces))

    async def close(self) -> None:
        # A running answer ends first: the model is freed only once nothing uses it.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()

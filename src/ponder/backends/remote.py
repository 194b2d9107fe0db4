"""A backend for any OpenAI-compatible engine: vLLM, SGLang, llama-server, Ollama.

It speaks Chat Completions with streaming over httpx and maps the engine's chunks
to Ponder events. Reasoning that an engine splits out itself (`reasoning_content`
in vLLM and SGLang, `reasoning` in newer ones) arrives as `ReasoningDelta`s.
Upstream 4xx errors keep their message and status class; anything else, including
an engine that cannot be reached, becomes a 502.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx

from ponder.backends.base import Backend, Capabilities, api_base, public_url
from ponder.errors import InvalidRequest, ModelNotFound, PonderError, Unsupported, UpstreamError
from ponder.formats import openai, toolcalls
from ponder.types import (
    AgentEvent,
    ChatRequest,
    Done,
    Event,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallEvent,
    Usage,
)


class RemoteBackend(Backend):
    capabilities = Capabilities(native_reasoning=True, batching=True)

    def __init__(
        self,
        base_url: str,
        upstream_model: str = "",
        api_key: str | None = None,
        timeout: float = 600.0,
        prefill: bool = False,
        extra_body: dict[str, Any] | None = None,
        vision: bool = False,
        audio: bool = False,
        max_concurrency: int = 64,
        thinking: str = "",
        progress: bool = False,
    ):
        # vLLM and SGLang continue a final assistant message with continue_final_message;
        # other engines may not, so it is opt-in per model (`prefill = true` in config).
        # Images and audio go to the engine as they are where config says it takes them.
        self.capabilities = Capabilities(vision=vision, audio=audio, native_reasoning=True, batching=True,
                                         prefill=prefill, thinking_budget=bool(thinking))  # fmt: skip
        self.thinking = thinking  # "vllm" | "sglang" | "": how the engine takes a thinking budget
        self.base_url = api_base(base_url)
        self.where = public_url(self.base_url)  # for messages: never a password in the URL
        self.upstream_model = upstream_model
        self.extra_body = extra_body or {}  # fields sent with every request (e.g. Ponder's mode)
        self.max_concurrency = max_concurrency
        # A Ponder server's stream carries its progress in a `ponder` field (`server/encode.py`).
        # With `progress` (ponder chat --url) it arrives as AgentEvents, first a "run" event
        # with the id that names the request to `control`.
        self.progress = progress
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)
        )

    @property
    def capacity(self) -> int:
        """The engine batches and queues on its own; this bounds what Ponder sends it at once."""
        return self.max_concurrency

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        body: dict[str, Any] = {
            "model": self.upstream_model or request.model,
            "messages": [openai.message_json(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        optional = {
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": p.seed,
            "stop": list(p.stop) or None,
            "frequency_penalty": p.frequency_penalty,
            "presence_penalty": p.presence_penalty,
            "response_format": dict(p.response_format) if p.response_format else None,
            "logprobs": True if p.logprobs is not None else None,
            "top_logprobs": p.logprobs or None,
            "ignore_eos": True if p.ignore_eos else None,  # vLLM's and llama-server's field
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if request.tools:
            body["tools"] = [openai.tool_json(t) for t in request.tools]
            named = request.tool_name and request.tool_choice != "none"
            body["tool_choice"] = ({"type": "function", "function": {"name": request.tool_name}}
                                   if named else request.tool_choice)  # fmt: skip
            body["parallel_tool_calls"] = request.parallel_tool_calls
        body.update(self.extra_body)
        if self.thinking and request.thinking is not None:
            body.update(_thinking_fields(self.thinking, request.thinking, body.get("chat_template_kwargs")))
        if request.prefill:
            if not self.capabilities.prefill:
                raise Unsupported("this remote model is not configured for prefill (prefill = true)")
            body["messages"].append({"role": "assistant", "content": request.prefill})
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        finish: FinishReason | None = None
        usage: Usage | None = None
        n_chunks = 0
        calls: dict[int, dict[str, str]] = {}  # tool calls arrive in pieces, by index
        try:
            async with self._client.stream("POST", "/chat/completions", json=self._body(request)) as resp:
                if resp.status_code >= 400:
                    raise _upstream_error(resp.status_code, await resp.aread(), self.where)
                async for chunk in _sse_json(resp):
                    if self.progress and (ext := _progress(chunk)) is not None:
                        yield ext
                    if chunk.get("usage"):
                        usage = _usage(chunk["usage"])
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                        if reasoning:
                            n_chunks += 1
                            yield ReasoningDelta(reasoning)
                        if delta.get("content"):
                            n_chunks += 1
                            yield TextDelta(delta["content"], _logprobs(choice.get("logprobs")))
                        for piece in delta.get("tool_calls") or []:
                            _add_call_piece(calls, piece)
                        if choice.get("finish_reason"):
                            reason = choice["finish_reason"]
                            finish = reason if reason in ("length", "tool_calls") else "stop"
        except httpx.HTTPError as e:
            raise UpstreamError(f"remote engine at {self.where} failed: {type(e).__name__}: {e}") from e
        if finish is None:  # e.g. llama_cpp.server drops the stream when a request fails inside it
            raise UpstreamError(f"remote engine at {self.where} ended the stream without finishing the answer")
        for _, c in sorted(calls.items()):
            yield ToolCallEvent(ToolCall(c["id"] or toolcalls.new_id(), c["name"], c["arguments"] or "{}"))
        if calls:
            finish = "tool_calls"
        yield Done(finish, usage or Usage(prompt_tokens=0, completion_tokens=n_chunks))

    async def control(self, run_id: str, action: str, **fields: int) -> None:
        """Steer a running request of a Ponder server (`server/controls.py`)."""
        try:
            resp = await self._client.post("/control", json={"id": run_id, "action": action, **fields})
        except httpx.HTTPError as e:
            raise UpstreamError(f"{self.where} did not take the control: {type(e).__name__}: {e}") from e
        if resp.status_code >= 400:
            raise _upstream_error(resp.status_code, resp.content, self.where)

    async def healthy(self, timeout: float = 5.0) -> bool:
        """The engine lists its models (vLLM, SGLang, llama-server and Ollama all answer /models)."""
        try:
            return (await self._client.get("/models", timeout=timeout)).status_code == 200
        except httpx.HTTPError:
            return False

    async def close(self) -> None:
        await self._client.aclose()


def _thinking_fields(flavor: str, budget: int, kwargs: Any) -> dict[str, Any]:
    """The request fields that switch a hybrid model's thinking on or off and cap it:
    vLLM takes the cap as `thinking_token_budget` (and ends the reasoning there
    itself); SGLang hands `thinking_budget` to the chat template (Qwen3's reads it)."""
    template = {**(kwargs or {}), "enable_thinking": budget > 0}
    if flavor == "sglang" and budget > 0:
        template["thinking_budget"] = budget
    out: dict[str, Any] = {"chat_template_kwargs": template}
    if flavor == "vllm" and budget > 0:
        out["thinking_token_budget"] = budget
    return out


def _progress(chunk: dict[str, Any]) -> AgentEvent | None:
    """A Ponder server's progress event in `chunk`, as the AgentEvent it was: its first
    chunk (type "mode") becomes a "run" event that carries the request's id."""
    ext = chunk.get("ponder")
    if not isinstance(ext, dict) or not isinstance(ext.get("type"), str):
        return None
    data = {k: v for k, v in ext.items() if k not in ("type", "agent", "choice")}
    if ext["type"] == "mode":
        return AgentEvent("run", None, {"id": chunk.get("id", ""), **data})
    agent = ext.get("agent")
    return AgentEvent(ext["type"], agent if isinstance(agent, int) else None, data)


def _logprobs(value: Any) -> tuple[TokenLogprob, ...]:
    content = (value or {}).get("content") or [] if isinstance(value, dict) else []
    return tuple(TokenLogprob(c.get("token", ""), float(c.get("logprob", 0.0)),
                              tuple((t.get("token", ""), float(t.get("logprob", 0.0)))
                                    for t in c.get("top_logprobs") or []))
                 for c in content if isinstance(c, dict))  # fmt: skip


def _add_call_piece(calls: dict[int, dict[str, str]], piece: dict[str, Any]) -> None:
    """Merge one streamed tool-call delta: the first piece of a call has its id and name,
    the rest carry pieces of its arguments."""
    c = calls.setdefault(piece.get("index", len(calls)), {"id": "", "name": "", "arguments": ""})
    fn = piece.get("function") or {}
    c["id"] = c["id"] or piece.get("id") or ""
    c["name"] = c["name"] or fn.get("name") or ""  # some servers repeat it in every piece
    c["arguments"] += fn.get("arguments") or ""


async def _sse_json(resp: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in _sse_lines(resp):
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            parsed = json.loads(data)
        except json.JSONDecodeError as e:
            raise UpstreamError(f"remote engine sent a malformed stream chunk: {data[:200]!r}") from e
        if "error" in parsed:  # some engines report mid-stream errors in-band
            raise UpstreamError(f"remote engine error: {parsed['error']}")
        yield parsed


async def _sse_lines(resp: httpx.Response) -> AsyncIterator[str]:
    """The stream's lines, ended by CRLF, LF or CR as SSE defines them. (httpx's
    `aiter_lines` also ends them at U+2028, U+0085 and the like, which JSON leaves
    unescaped inside strings.)"""
    rest = ""
    async for text in resp.aiter_text():
        *lines, rest = _SSE_EOL.split(rest + text)
        for line in lines:
            yield line
    if rest:
        yield rest


_SSE_EOL = re.compile(r"\r\n|\r(?!\Z)|\n")  # a CR at the end may be half of a CRLF still on its way


def _usage(u: dict[str, Any]) -> Usage:
    details = u.get("completion_tokens_details") or {}
    prompt_details = u.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=u.get("prompt_tokens") or 0,
        completion_tokens=u.get("completion_tokens") or 0,
        cached_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=details.get("reasoning_tokens") or 0,
    )


def _upstream_error(status: int, raw: bytes, where: str) -> PonderError:
    try:
        err = json.loads(raw).get("error") or {}
        message = err.get("message") if isinstance(err, dict) else str(err)
    except (json.JSONDecodeError, AttributeError):
        err, message = {}, raw.decode("utf-8", "replace")[:500]
    message = f"remote engine at {where}: {message or f'HTTP {status}'}"
    param = err.get("param") if isinstance(err, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    if status == 404:
        return ModelNotFound(message, param=param)
    if 400 <= status < 500 and status not in (401, 403):
        e = InvalidRequest(message, param=param, code=code)
        e.status = status
        return e
    return UpstreamError(message)

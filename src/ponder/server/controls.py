"""Controls on a running request: answer now, think longer, stop one agent.

    POST /v1/chat/completions/control   {"id": "chatcmpl-…", "action": "answer_now"}
    POST /v1/control                    the same body, for a request of any dialect

`id` is one the request's response already carries: its Chat Completion id
(`chatcmpl-…`, in every streamed chunk), or its `X-Request-Id` header (any
dialect). `action` is `answer_now` (llama-server's `reasoning_end` is the same),
`think_longer` with `tokens`, or `stop_agent` with `agent` (a Contemplating agent's
index, as its progress events give it). The reply is `{"success": true}`, as
llama-server answers its own control. Only the key that made the request may steer
it: for any other key, as for a request that has ended or never ran here, the
answer is 404. A request is known to the server process that runs it; behind a
load balancer, a control must reach the same replica.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ponder.errors import NotFound, invalid_value
from ponder.modes.steer import Steer
from ponder.server.guard import owner

router = APIRouter()

Action = Literal["answer_now", "reasoning_end", "think_longer", "stop_agent"]


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # llama-server's clients send `model` too

    id: str = Field(min_length=1, max_length=200)
    action: Action
    tokens: int | None = Field(default=None, ge=1, le=1_000_000)  # think_longer
    agent: int | None = Field(default=None, ge=0, le=1_000)  # stop_agent


class Controls:
    """The running requests, by every id they can be named by, with their owner and mode
    (two requests may share an X-Request-Id a client chose: each key finds its own)."""

    def __init__(self) -> None:
        self._runs: dict[str, list[tuple[str, str, Steer]]] = {}

    @contextmanager
    def running(self, ids: Sequence[str], key: str, mode: str, steer: Steer) -> Iterator[None]:
        named = [i for i in ids if i]
        entry = (key, mode, steer)
        for i in named:
            self._runs.setdefault(i, []).append(entry)
        try:
            yield
        finally:
            for i in named:
                runs = self._runs.get(i, [])
                if entry in runs:
                    runs.remove(entry)
                if not runs:
                    self._runs.pop(i, None)

    def find(self, run_id: str, key: str) -> tuple[str, Steer]:
        """The mode and controls of the request `run_id` that `key` made, or NotFound."""
        for owner_, mode, steer in reversed(self._runs.get(run_id, [])):
            if owner_ == key:
                return mode, steer
        raise NotFound(f"No running request '{run_id}' of yours on this server: it has ended, or never ran here.",
                       param="id")  # fmt: skip


@router.post("/v1/chat/completions/control")
@router.post("/v1/control")
async def control(body: ControlRequest, request: Request) -> JSONResponse:
    controls: Controls = request.app.state.controls
    mode, steer = controls.find(body.id, owner(request))
    if body.action in ("answer_now", "reasoning_end"):
        steer.answer_now()
    elif body.action == "think_longer":
        if body.tokens is None:
            raise invalid_value("tokens", "think_longer needs `tokens`: how many more the reasoning may spend")
        steer.think_longer(body.tokens)
    else:
        if body.agent is None:
            raise invalid_value("agent", "stop_agent needs `agent`: the index of the agent to stop")
        if mode not in ("contemplating", "auto"):
            raise invalid_value("agent", f"this request runs in {mode} mode, which has no agents")
        steer.stop_agent(body.agent)
    return JSONResponse({"success": True})

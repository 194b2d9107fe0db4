"""The web app: its page and assets (`/`, `/static/…`, all served from the package,
so it works offline), and the conversations it keeps in the store (`/app/api/…`).

The page talks to the same OpenAI-compatible API any client uses; the only API of
its own is for conversations: list and search, create, read, save, delete.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ponder.errors import NotFound, TooLarge
from ponder.server.guard import owner
from ponder.store import Conversation, Store

router = APIRouter(include_in_schema=False)
WEB = Path(__file__).resolve().parent.parent / "web"
MAX_CONVERSATION_BYTES = 64 << 20  # messages keep their attachments

# The page runs only its own scripts and style sheets; KaTeX sets style attributes (answers may not:
# app.js strips them); attachments show as data: and blob: URLs.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "style-src-attr 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' data: blob:; font-src 'self'; "
    "connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@router.get("/")
async def page() -> Response:
    return FileResponse(WEB / "index.html", headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@router.get("/static/{path:path}")
async def asset(path: str) -> Response:
    if "\0" in path:
        raise NotFound(f"No such file: /static/{path!r}")
    file = (WEB / path).resolve()
    if not file.is_relative_to(WEB) or not file.is_file() or file.name == "index.html":
        raise NotFound(f"No such file: /static/{path}")
    return FileResponse(file, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


# --- conversations ----------------------------------------------------------------


class ConversationBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    title: str | None = Field(default=None, max_length=200)
    messages: list[dict[str, Any]] | None = Field(default=None, max_length=2000)


def _store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def _get(request: Request, conversation_id: str) -> Conversation:
    found = await asyncio.to_thread(_store(request).conversation, conversation_id, owner(request))
    if found is None:
        raise NotFound(f"Conversation '{conversation_id}' not found.", param="conversation_id")
    return found


def _checked(body: ConversationBody) -> ConversationBody:
    """The body, size-checked, with lone surrogates (a cut emoji) made "?" so that it
    can be stored and sent back as UTF-8."""
    text = json.dumps({"title": body.title, "messages": body.messages}, ensure_ascii=False)
    if len(text) > MAX_CONVERSATION_BYTES:
        raise TooLarge(f"A conversation may hold {MAX_CONVERSATION_BYTES:,} bytes.", param="messages")
    clean = json.loads(text.encode("utf-8", "replace").decode("utf-8"))
    return ConversationBody.model_construct(title=clean["title"], messages=clean["messages"])


@router.get("/app/api/conversations")
async def list_conversations(request: Request, q: str = "", limit: int = 200) -> dict[str, Any]:
    found = await asyncio.to_thread(_store(request).conversations, q[:200], max(1, min(limit, 1000)), owner(request))
    return {"object": "list", "data": [c.summary() for c in found]}


@router.post("/app/api/conversations")
async def create_conversation(body: ConversationBody, request: Request) -> dict[str, Any]:
    body = _checked(body)
    now = time.time()
    c = Conversation(f"conv_{uuid.uuid4().hex}", body.title or "New chat", now, now, body.messages or [])
    await asyncio.to_thread(_store(request).save_conversation, c, owner(request))
    return {**c.summary(), "messages": c.messages}


@router.get("/app/api/conversations/{conversation_id}")
async def get_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    c = await _get(request, conversation_id)
    return {**c.summary(), "messages": c.messages}


@router.put("/app/api/conversations/{conversation_id}")
async def save_conversation(conversation_id: str, body: ConversationBody, request: Request) -> dict[str, Any]:
    body = _checked(body)
    saved = await asyncio.to_thread(_store(request).update_conversation, conversation_id, body.title, body.messages,
                                    time.time(), owner(request))  # fmt: skip
    if saved is None:
        raise NotFound(f"Conversation '{conversation_id}' not found.", param="conversation_id")
    return saved.summary()


@router.delete("/app/api/conversations/{conversation_id}")
async def delete_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    if not await asyncio.to_thread(_store(request).delete_conversation, conversation_id, owner(request)):
        raise NotFound(f"Conversation '{conversation_id}' not found.", param="conversation_id")
    return {"id": conversation_id, "deleted": True}

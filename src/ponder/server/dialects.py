"""Which dialect a path speaks, for the shape of its errors: Anthropic's on
/v1/messages, Ollama's on /api/, OpenAI's everywhere else."""

from __future__ import annotations

from typing import Any

from ponder.errors import PonderError
from ponder.server import messages_wire, ollama_wire

ANTHROPIC = "/v1/messages"
OLLAMA = "/api/"


def error_body(path: str, e: PonderError) -> dict[str, Any]:
    if path == ANTHROPIC or path.startswith(ANTHROPIC + "/"):
        return messages_wire.error_json(e)
    if path.startswith(OLLAMA):
        return ollama_wire.error_json(e)
    return e.to_body()

"""Images, audio and files: checked, and read for models that cannot take them."""

from __future__ import annotations

import re

# What perception writes into a user's message for an image or a file (`vision.describe`,
# `documents.extract`): a block from "[Image 2…" or "[File 1…" to "[end of Image 2…]", or, for
# an image OCR found no text in, its one bracketed line.
_ATTACHED = re.compile(
    r"\[(Image|File) (\d+)\b(?:[^\n]*found no text in it\.[^\n]*\]|.*?\[end of \1 \2\b[^\]]*\])", re.DOTALL
)


def own_words(text: str) -> str:
    """`text` without the images and files perception wrote into it: what the user
    typed, or said (an audio transcript is the user's own question, and stays)."""
    return _ATTACHED.sub("", text)

"""Pull a short, comparable answer out of free text: for probes and votes.

It knows the habits of small instruct models on closed-form questions:
`\\boxed{…}` first (Qwen writes it even when asked for something else), then an
explicit "answer is/Answer:" phrase, then the last number. It does not judge open
answers; for those `normalize` only makes near-identical strings compare equal.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_ANSWER_PHRASE = re.compile(r"(?:final answer|answer is|answer:)\s*[:\-]?\s*\**\s*(.+)", re.IGNORECASE)


def boxed(text: str) -> str | None:
    """The content of the last \\boxed{...}, with nested braces."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return text[i:].strip() or None


def number(text: str) -> str | None:
    """The last number in `text`, normalised: no $ or thousands commas, no trailing .0."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    value = found[-1].replace("$", "").replace(",", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value or None


def extract(text: str) -> str | None:
    """The answer a text commits to, as a comparable string, or None."""
    return stated(text) or number(text)


def stated(text: str) -> str | None:
    """The answer a text states outright (`\\boxed{…}` or "the answer is …"), with no
    fallback to the last number: an intermediate result is not a conclusion."""
    candidates = [boxed(text)]
    phrase = _ANSWER_PHRASE.findall(text)
    if phrase:
        candidates.append(phrase[-1])
    for c in candidates:
        if c:
            n = number(c)
            return n if n is not None else normalize(c)
    return None


def normalize(text: str) -> str:
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
    return re.sub(r"[\s*`$.]+", " ", text).strip().lower()

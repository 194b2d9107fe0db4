"""Multiple choice, answered two ways: by the letter the model names, and by how
likely it finds each option's own words.

A question that letters its options ("A. ...", "(b) ...") is asked two ways:

- the letter: the model reads the options and names one (what it says bare). Its
  log-probabilities at that letter give a distribution over the letters;
- the words (cloze scoring): each option's text is scored as the model's reply to the
  question without the options, and the mean log-probability per byte of each reply
  gives a second distribution (the "acc_norm" of EleutherAI's lm-evaluation-harness).
  No token is generated: the engine only reads the options (`Backend.score`).

Small models pick letters badly: OLMES (arXiv 2406.08446) measured the cloze form
ahead of the lettered form for most models under about 7B parameters, and the
lettered form ahead once a model has learned the format. The two are pooled by
multiplying them (a product of experts), so whichever is sure of itself carries the
answer: a peaked letter distribution from a model that knows the format, the
options' own likelihood where the letter is a guess.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ponder.backends.base import Backend
from ponder.modes import answers
from ponder.types import ChatRequest, Message, TokenLogprob

_OPTION = re.compile(r"^\s*\(?([A-Za-z])[.)]\s+(.*\S)\s*$")
_HEADER = re.compile(r"^\s*(?:answer\s+)?(?:choices|options|answers|alternatives|candidates)\s*:\s*$", re.IGNORECASE)
# What a request to choose says somewhere: a question, or the words of one. A list of
# steps or tasks lettered a), b) says none of them and is not a choice.
_ASKS = re.compile(r"\?|\b(?:which|choose|select|pick|correct|answer|option|letter|true|false|best|most likely)\b",
                   re.IGNORECASE)  # fmt: skip
# What may come right before the letter an answer names ("B", "Answer: B", "(B)", "is B"):
# not an article "a" inside a sentence.
_NAMES_LETTER = re.compile(r"(?:^|\bis|:|\(|\boption|\bchoice|\*\*)\s*$", re.IGNORECASE)
FLOOR = 1e-6  # the probability given to a letter the engine did not list among its top candidates


@dataclass(frozen=True)
class Choices:
    stem: str  # the question (or context) before the options
    options: tuple[str, ...]  # the options' texts, in the order their letters run

    def letter(self, index: int) -> str:
        return chr(ord("a") + index)


def parse(text: str) -> Choices | None:
    """The options of `text` when it letters two or more of them in order (A., B., …,
    one per line) and asks for a choice, with the question before them (and a
    question after them); None otherwise. Other text after the options (an
    instruction on how to reply) is not part of any option."""
    if not _ASKS.search(text):
        return None
    lines = text.splitlines()
    found: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = _OPTION.match(line)
        if m and m.group(1).lower() == chr(ord("a") + len(found)):
            if found and i != found[-1][0] + 1:  # options run on consecutive lines
                break
            found.append((i, m.group(2)))
    if len(found) < 2:
        return None
    before = lines[: found[0][0]]
    while before and not before[-1].strip():
        before.pop()
    if len(before) > 1 and _HEADER.match(before[-1]):  # "Choices:" after a question names the options
        before.pop()
    asked_after = [line.strip() for line in lines[found[-1][0] + 1 :] if line.strip().endswith("?")]
    stem = "\n".join([*before, *asked_after]).strip()
    return Choices(stem, tuple(o for _, o in found)) if stem else None


async def score(backend: Backend, chat: ChatRequest, choices: Choices) -> tuple[list[float], int]:
    """Each option's mean log-probability per byte as the reply to the question alone
    (after the request's system prompt), all options at once; and the tokens read."""
    system = tuple(m for m in chat.messages if m.role in ("system", "developer"))
    base = replace(chat, messages=(*system, Message("user", choices.stem)), tools=(), tool_name=None)
    scored = await asyncio.gather(*(backend.score(replace(base, prefill=o)) for o in choices.options))
    values = [sum(s) / max(1, len(o.encode())) for s, o in zip(scored, choices.options, strict=True)]
    return values, sum(len(s) for s in scored)


def softmax(values: Sequence[float]) -> list[float]:
    peak = max(values)
    e = [math.exp(v - peak) for v in values]
    total = sum(e)
    return [x / total for x in e]


def letter_distribution(logprobs: Sequence[TokenLogprob], n: int, committed: str | None) -> list[float] | None:
    """The probabilities of the letters a..(n-th), from the engine's top candidates at
    the first token of the answer that is the letter it `committed` to ("C", " B");
    None when there is no such token (or no log-probabilities came with the answer)."""
    before = ""
    for lp in logprobs:
        named_here = committed is not None and _as_letter(lp.token, n) == ord(committed) - ord("a")
        if not named_here or not _NAMES_LETTER.search(before):
            before += lp.token
            continue
        probs = [FLOOR] * n
        for text, value in lp.top or ((lp.token, lp.logprob),):
            i = _as_letter(text, n)
            if i is not None and math.isfinite(value):
                probs[i] = max(probs[i], math.exp(value))
        total = sum(probs)
        return [p / total for p in probs]
    return None


def _as_letter(token: str, n: int) -> int | None:
    t = token.strip().strip("(").lower()
    if len(t) == 1 and "a" <= t < chr(ord("a") + n):
        return ord(t) - ord("a")
    return None


def pool(*distributions: Sequence[float] | None) -> list[float]:
    """The product of the distributions given (None ones skipped), renormalised."""
    given = [d for d in distributions if d is not None]
    out = [1.0] * len(given[0])
    for d in given:
        out = [x * max(p, FLOOR) for x, p in zip(out, d, strict=True)]
    total = sum(out)
    return [x / total for x in out]


def shown(found: Choices, letter: str, direct: str | None) -> str:
    """An option given as the answer, in the form of the model's `direct` answer: the
    letter alone if that is how it answered (as the question may have asked), else
    the letter and the option's text."""
    index = ord(letter) - ord("a")
    if not 0 <= index < len(found.options) or (direct and len(direct.strip().strip(".)( *")) == 1):
        return letter.upper()
    return f"{letter.upper()}. {found.options[index]}"


def named(question: str, answer: str, logprobs: Sequence[TokenLogprob]) -> list[float] | None:
    """The letter distribution of `answer` to `question` (None unless the question
    letters its options and the answer names one, with log-probabilities)."""
    choices = parse(question)
    if choices is None:
        return None
    committed = answers.choice(answer, len(choices.options), choices.options)
    return letter_distribution(logprobs, len(choices.options), committed)

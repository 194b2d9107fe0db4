"""Pull a short, comparable answer out of free text: for probes, votes and scoring.

It knows the habits of small instruct models on closed-form questions:
`\\boxed{…}` first (Qwen writes it even when asked for something else), then an
explicit "answer is/Answer:" phrase, then the last number. A text that commits to a
lettered option ("The answer is (B)", "B) Paris", "**B**", "\\boxed{B}") gives the
letter, lower-cased ("b"), so votes over several answers compare letters. `choice`
reads the letter an answer to a multiple-choice question commits to, given how many
options there were. It does not judge open answers; for those `normalize` only
makes near-identical strings compare equal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ponder.formats.clean import boxed as boxed  # (they live beside the cleaner, which needs them too)
from ponder.formats.clean import number as number

# (a "-" after the phrase is a dash, unless a number follows it: "the answer is -1"; "The final
# answer is:" may put the answer on the next line)
_ANSWER_PHRASE = re.compile(r"(?:final answer(?:\s+(?:is|was|would be))?|answer is|answer:)"
                            r"\s*(?::|-(?!\$?\d))?\s*\**\s*(.+)", re.IGNORECASE)  # fmt: skip

# A letter that names an option: "(B)", "[B]", or "B" followed by ")", ".", ":", ",", ";"
# or the end. Not "B.C." (an abbreviation) and not "A cat" (the article).
_MARKED = re.compile(r"^(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])(?:[):,;\]]|\.(?![A-Za-z0-9])|$))")
_MARKUP = re.compile(r"[*_`]+")
_TEXT_MACRO = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")
# "the answer is B", "Answer: (c)", "the correct option is **D**", "option C", "choice: B"
_CHOICE_PHRASE = re.compile(
    r"\b(?:answer|option|choice|letter)\b\s*(?:is|would be|should be|must be|[:=\-])?\s*"
    r"(?:(?:option|choice|letter)\b\s*)?:?\s*[*_`]*\s*(\(?[A-Za-z]\)?)(?![\w'’\-]|\.[A-Za-z0-9])",
    re.IGNORECASE,
)
# What `stated` takes as a named option besides "answer is": "the correct option is B", "option B is correct"
_BEST_OPTION = re.compile(
    r"\b(?:correct|right|best|true)\s+(?:option|choice|answer|letter)\s*(?:is|would be|:)\s*[*_`]*"
    r"(\(?[A-Za-z]\)?)(?![\w'’\-]|\.[A-Za-z0-9])",
    re.IGNORECASE,
)
_OPTION_FIRST = re.compile(r"\b(?:option|choice)\s+\(?([A-Z])\)?\s+is\s+(?:the\s+)?(?:correct|right|best|true)\b",
                           re.IGNORECASE)  # fmt: skip
# After "A" or "I", these words make it the option ("A is correct"), not the article ("A cat").
_LETTER_VERBS = {"is", "was", "would", "will", "seems", "looks", "fits", "matches", "makes", "describes", "best",
                 "and", "or", "because", "since", "as"}  # fmt: skip
_STANDALONE = re.compile(r"(?<![\w'’.\-/\\])([A-Z])(?![\w'’\-/]|\.[A-Za-z0-9])")


def extract(text: str) -> str | None:
    """The answer a text commits to, as a comparable string, or None: what it states
    (`stated`), else the lettered option it gives ("B", "**B**", "B) Paris" on its
    first line), else its last number."""
    return stated(text) or _lettered(text) or number(text)


def stated(text: str) -> str | None:
    """The answer a text states outright (`\\boxed{…}`, "the answer is …", "the correct
    option is B"), with no fallback to the last number: an intermediate result is not
    a conclusion. A lettered option comes back as its letter, lower-cased."""
    candidates = [boxed(text)]
    phrase = _ANSWER_PHRASE.findall(text)
    if phrase:
        candidates.append(phrase[-1])
    for c in candidates:
        if c:
            letter = _letter(c)
            if letter:
                return letter
            n = number(c)
            return n if n is not None else normalize(c)
    named = [m for p in (_BEST_OPTION, _OPTION_FIRST) for m in p.finditer(text)]
    named = [m for m in named if not _article(text, m.end(1), m.group(1))]
    return max(named, key=lambda m: m.start()).group(1).strip("()").lower() if named else None


def choice(text: str, n_options: int, options: Sequence[str] = ()) -> str | None:
    """The lettered option (of `n_options`: "a" to the n-th letter) that an answer to a
    multiple-choice question commits to, lower-cased, or None when it commits to none.

    In order: a `\\boxed{}` letter; the last "answer is B" / "Answer: (b)" / "the correct
    option is **B**" phrase; a reply that is only a letter ("B", "(B)", "**B**");
    lines that start with one option's letter ("B) Paris", "B. Paris"); a reply that
    is one option's own text (when `options` are given); and last, the last capital
    letter standing alone ("so C"), but not an article or pronoun ("A cat sat", "I
    think") when nothing better exists. Letters outside the range never count, and
    reasoning before a `</think>` is ignored."""
    if n_options <= 0 or not text:
        return None
    n = min(n_options, 26)
    top = chr(ord("a") + n - 1)

    def ok(letter: str | None) -> str | None:
        return letter.lower() if letter and "a" <= letter.lower() <= top else None

    visible = text[text.rfind("</think>") + len("</think>") :] if "</think>" in text else text
    visible = _TEXT_MACRO.sub(r"\1", visible)
    box = boxed(visible)
    if box and (got := ok(_letter(box))):
        return got
    for m in reversed(list(_CHOICE_PHRASE.finditer(visible))):
        if not _article(visible, m.end(1), m.group(1)) and (got := ok(m.group(1).strip("()"))):
            return got
    for m in reversed(list(_OPTION_FIRST.finditer(visible))):
        if got := ok(m.group(1)):
            return got
    if got := ok(_whole(visible)):
        return got
    starts = {ok(letter) for letter in _line_letters(visible, lower=True)} - {None}
    if len(starts) == 1:
        return starts.pop()
    if options:
        said = _plain(visible)
        same = [i for i, o in enumerate(options[:n]) if _plain(o) and _plain(o) == said]
        if len(same) == 1:
            return chr(ord("a") + same[0])
    for m in reversed(list(_STANDALONE.finditer(visible))):
        if not _article(visible, m.end(1), m.group(1)) and (got := ok(m.group(1))):
            return got
    return None


def normalize(text: str) -> str:
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
    return re.sub(r"[\s*`$.]+", " ", text).strip().lower()


def _letter(candidate: str) -> str | None:
    """The option letter a short answer names ("B", "(b)", "**B**", "B) Paris"), lower-cased."""
    plain = _MARKUP.sub("", _TEXT_MACRO.sub(r"\1", candidate)).strip()
    m = _MARKED.match(plain)
    if m:
        return next(g for g in m.groups() if g).lower()
    m = re.match(r"([A-Z])\s+[a-z]", plain)  # "B because …", "A is …"; not "A total of 18"
    if m and not _article(plain, 1, m.group(1)):
        return m.group(1).lower()
    return None


def _whole(text: str) -> str | None:
    """The letter, when the whole reply is one ("B", "(B).", "**b**", "[C]")."""
    plain = _MARKUP.sub("", text).strip().rstrip(".!")
    m = re.fullmatch(r"\(?\[?([A-Za-z])\]?\)?", plain)
    return m.group(1).lower() if m else None


def _line_letters(text: str, lower: bool = False) -> list[str]:
    """The capital letters that lines start with as option markers ("B) …", "(B) …", "**B.** …");
    with `lower`, small ones too where the marker is a bracket ("b) …", "(b) …")."""
    found = []
    small = r"|\(([a-z])\)|([a-z])\)" if lower else ""
    for line in text.splitlines():
        plain = _MARKUP.sub("", line).lstrip(" \t>#-")
        m = re.match(rf"(?:\(([A-Z])\)|([A-Z])[).:](?![A-Za-z0-9]){small})", plain)
        if m:
            found.append(next(g for g in m.groups() if g))
    return found


def _lettered(text: str) -> str | None:
    """For `extract`: the option a reply gives without saying "answer": the whole reply
    is a letter, or its first line starts with one ("B) Paris") and no other line
    starts with another (a list of the options commits to none of them)."""
    whole = _whole(text)
    if whole:
        return whole
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    first = _line_letters(lines[0])
    if first and set(_line_letters(text)) == set(first):
        return first[0].lower()
    return None


def _article(text: str, end: int, letter: str) -> bool:
    """Whether the letter ending at `end` is the word "a"/"A" or "I" in a sentence
    ("A cat sat", "I think"), not a named option ("A is correct", "(A) cat")."""
    if letter.lower() not in ("a", "i"):
        return False
    m = re.match(r"\s+([a-z]+)", text[end:])
    return m is not None and m.group(1) not in _LETTER_VERBS


def _plain(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).strip().lower()

"""Notice when streamed text has degenerated into a loop, so generation can stop early.

Small models, greedy or nearly so, fall into cycles they never leave: "The answer is
18. The answer is 18. …", "\\boxed{18}\\boxed{18}…", a block of three lines over and
over, "1111111…". Left alone, each runs on to `max_tokens` or the context limit.
`LoopGuard.feed` returns True once the text has looped, by either of two signs:

- It ends in an exact repetition: a unit of 1 to 1024 characters, repeated at least 4
  times and over at least 200 characters. In code (a fenced block, or lines indented
  as Markdown's code blocks are), or when the unit has no letter or digit, it takes
  1000 characters: there long exact repeats are legitimate (rows of a zero matrix,
  table rules, ASCII art, blank lines).
- One line recurs: the same line (16 characters and 3 words or more, list markers
  aside, not in code) is half of the last 24 such lines. This catches loops that vary
  between repeats but keep a line ("Let me check again." and a new sum, over and
  over); needing half lets numbered lists, tables, derivations and refrains be.

`settled_text` is then the text up to the end of the loop's first copy: what was
written before the loop and the unit once (ending where a line, a sentence or a word
ends), so that an answer can still be read from it ("… The answer is 18. " rather
than nothing, or 200 characters of repeats).

It is cheap enough to run on every token: the repetition is looked for at every 64th
character position only, in the last 4096 characters, and each line is handled once
when it ends. Checks fall at positions in the text, never at the pieces' edges, so the
verdict and `settled_text` do not depend on how the stream was cut.

What it does not know: a loop whose unit is longer than 1024 characters, or which
changes every time and keeps no line (a counter: "Step 41: … Step 42: …"); the same
reasoning reworded; loops in code until they pass 1000 characters. It takes for loops
what legitimately repeats itself: 200 characters of one exact repeat in prose (a
repeating decimal written out to 200 digits), or text whose every other line is the
same one (a git log by one author, unfenced code with a decorator on every function).
"""

from __future__ import annotations

import re
from collections import Counter, deque

WINDOW = 4096  # the tail the repetition is looked for in
EVERY = 64  # characters between two looks
REPEATS = 4
MAX_UNIT = WINDOW // REPEATS
COVER = 200  # characters the repetition must span, in prose
CODE_COVER = 1000  # ... in code, or of a unit without letters or digits
LINE_MIN = 16
LINE_WINDOW = 24  # the last lines of that length the recurring line is counted among
LINE_REPEATS = 12
_KEY = 16  # the tail's last characters: where they occurred before gives the candidate units
_CANDIDATES = 64  # candidates tried per look (a unit with long runs of spaces has many)

_FENCE = re.compile(r"[ \t]*(`{3,}(?!.*`)|~{3,})(.*)")  # Markdown's: a backtick fence's info has no backtick
_MARKER = re.compile(r"\s*(?:(?:[-*+•>]|\d+[.)])\s+)?")  # "- x", "3. x" and "x" are the same line
_ALNUM = re.compile(r"[^\W_]")
_INDENTED = re.compile(r" {4}|\t|[ \t]*\n")  # a line of Markdown's indented code (or a blank one, which it may have)
_BREAKS = (re.compile(r"(?<=\n)"), re.compile(r"(?<=[.!?]\s)"), re.compile(r"(?<=\s)"))


class LoopGuard:
    def __init__(self) -> None:
        self.looped = False
        self.reason = ""  # what was found, for logs: "13 repeats of 'The answer is 18. '"
        self._parts: list[str] = []
        self._size = 0  # characters fed
        self._tail = ""  # the last WINDOW characters up to the last look
        self._pending: list[str] = []  # text since then
        self._line: list[str] = []  # the line being written
        self._fence = ""  # the fence that opened the code block we are in; "": none
        self._lines: deque[tuple[str, int]] = deque()  # recent lines that count, and where each ends
        self._counts: Counter[str] = Counter()
        self._cut: int | None = None

    def feed(self, text: str) -> bool:
        """Add the next piece of the stream; True once the text has looped (and from then on)."""
        start = self._size
        self._parts.append(text)
        self._size += len(text)
        i = 0
        while i < len(text) and not self.looped:
            stop = min(len(text), (start + i) // EVERY * EVERY + EVERY - start)  # the next look, or the end
            piece = text[i:stop]
            self._read_lines(piece, start + i)
            self._pending.append(piece)
            if (start + stop) % EVERY == 0 and not self.looped:
                self._look(start + stop)
            i = stop
        return self.looped

    @property
    def settled_text(self) -> str:
        """All the text fed so far, or once looped, the text up to the end of the loop's first copy."""
        text = self._text()
        return text if self._cut is None else text[: self._cut]

    def _text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    # --- a line that keeps coming back ------------------------------------------------

    def _read_lines(self, piece: str, offset: int) -> None:
        at = 0
        while (nl := piece.find("\n", at)) >= 0:
            self._line.append(piece[at:nl])
            line = "".join(self._line)
            self._line.clear()
            self._end_line(line, offset + nl + 1)
            if self.looped:
                return
            at = nl + 1
        self._line.append(piece[at:])

    def _end_line(self, line: str, end: int) -> None:
        fence = _FENCE.match(line)
        if fence and not self._fence:
            self._fence = fence[1]
            return
        if fence and fence[1][0] == self._fence[0] and len(fence[1]) >= len(self._fence) and not fence[2].strip():
            self._fence = ""  # closed by the same character, as many or more, and nothing after
            return
        key = line[_MARKER.match(line).end() :].strip()  # type: ignore[union-attr]
        if self._fence or _INDENTED.match(line) or len(key) < LINE_MIN or len(key.split()) < 3:
            return
        self._lines.append((key, end))
        self._counts[key] += 1
        if len(self._lines) > LINE_WINDOW:
            old, _ = self._lines.popleft()
            self._counts[old] -= 1
        if self._counts[key] >= LINE_REPEATS:
            first = next(e for k, e in self._lines if k == key)
            self._stop(first, f"the line {key[:60]!r} {LINE_REPEATS} times in {len(self._lines)} lines")

    # --- an exact repetition at the end -------------------------------------------------

    def _look(self, at: int) -> None:
        """Does the text up to `at` end in a repetition?"""
        tail = self._tail = (self._tail + "".join(self._pending))[-WINDOW:]
        self._pending.clear()
        n = len(tail)
        if n < COVER:
            return
        # The unit's length is the distance back to an earlier occurrence of the tail's
        # last characters: try the nearest first, so the shortest unit wins.
        key = tail[-_KEY:]
        j = tail.rfind(key, 0, n - 1)
        for _ in range(_CANDIDATES):
            unit = n - _KEY - j
            if j < 0 or unit > MAX_UNIT:
                return
            cover = CODE_COVER if self._lenient(tail, unit) else COVER
            need = max(cover, REPEATS * unit)
            if need <= n and tail[n - need : n - unit] == tail[n - need + unit :]:
                self._settle_repeat(at, unit)
                return
            j = tail.rfind(key, 0, j + _KEY - 1)

    def _lenient(self, tail: str, unit: int) -> bool:
        """Whether long exact repeats of the tail's last `unit` characters are to be
        expected: in code (fenced, or indented as Markdown's code blocks are), or of a
        unit with no letter or digit."""
        n = len(tail)
        if self._fence or not _ALNUM.search(tail, n - unit):
            return True
        # The unit's lines start after the newlines of any unit's length of the
        # repetition; take the one before the last, where each line's start is whole.
        lo = n - 2 * unit - 1
        starts = [lo + i + 1 for i, c in enumerate(tail[lo : n - unit - 1]) if c == "\n"]
        if not starts:  # the repetition is within one line
            starts = [tail.rfind("\n") + 1] if "\n" in tail else []
        return bool(starts) and all(_INDENTED.match(tail, p) for p in starts)

    def _settle_repeat(self, at: int, unit: int) -> None:
        text = self._text()
        # Where the repetition begins: as far back as each character equals the one a unit later.
        begin = at - unit
        while begin >= 256 and text[begin - 256 : begin] == text[begin - 256 + unit : begin + unit]:
            begin -= 256
        while begin > 0 and text[begin - 1] == text[begin - 1 + unit]:
            begin -= 1
        # One unit on, to the first place a line, a sentence or else a word ends: the
        # repetition found often begins a little before the loop's first copy, where the
        # text before it happens to end as the unit does ("…18.\n" before "So it is
        # 18.\n", "Thus, t" before "he answer is 18. T"), and a cut exactly one unit on
        # would fall inside a word ("So it is 1|8").
        cut = _first_break(text, begin + unit, begin + 2 * unit)
        self._stop(cut, f"{(at - begin) // unit} repeats of {text[cut - unit : cut][:60]!r}")

    def _stop(self, cut: int, reason: str) -> None:
        self.looped = True
        self._cut = cut
        self.reason = reason


def _first_break(text: str, lo: int, hi: int) -> int:
    """The first position in [lo, hi) just after a line ends, else a sentence, else a word; lo if none."""
    for pattern in _BREAKS:
        found = pattern.search(text, lo, hi)
        if found is not None and found.start() < hi:
            return found.start()
    return lo

"""Clean a final answer for its reader as it streams: `\\boxed{…}` wrappers, and a
prompt the model echoed back before answering.

Our own prompts ask for `\\boxed{answer}` so that answers can be extracted, and Qwen
writes it unasked; the reader wants `18`, not the LaTeX. `AnswerCleaner` drops every
`\\boxed` and `\\fbox` wrapper and keeps what it wraps, nested braces and all
(`\\boxed{\\frac{1}{2}}` is `\\frac{1}{2}`, `\\boxed 5` is `5`, `$\\boxed{18}$` is
`$18$`), wherever the deltas cut it. It holds back only a backslash and the letters
after it while they may still spell one of the two, so text without a backslash passes
straight through; a wrapper's content streams as it comes and its closing brace is
dropped when it arrives. It reads LaTeX only as far as that needs: `\\{`, `\\}` are
content, not braces; `\\\\` is a line break, not the start of a command; `\\boxedx` or
`\\fboxsep` are other commands. Markdown code, inline or fenced, is left as written (an
answer about LaTeX may show `\\boxed{x}` on purpose); a code span counts from a run of
backticks to the next run as long, so a stray backtick leaves the rest as written too.

It does not render or check the LaTeX: a wrapper still open at the end has given its
content and simply never closes; `\\boxed` with no argument disappears; a box emptied of
content leaves its math delimiters (`$$`, `\\[ \\]`) behind. Removing those would mean
holding back every `$`, and a model writes `\\boxed{}` about never.

A box marks the answer, and a reader (or a program grading the reply by its last
number) loses that mark with it: "he will be \\boxed{21} years old in 3 years" reads as
3. So when the last box held a number and the cleaned answer's last number is another,
`flush` closes the answer with a line that says it: "**Answer: 21**". A box of LaTeX
(`\\frac{1}{2}`) or of words gets no such line.

`echoes`: phrases of the prompt that asked for the answer (the thinking mode's "the
result of your reasoning above"). Small models sometimes start their answer by copying
that request back. A leading sentence (up to `.`, `!`, `?` or `:`, with any `**` or
quote they close, and a space; or a newline; at most 300 characters) is dropped when
it ends with one of the phrases,
give or take a closing "is", "are" or "as follows" and punctuation, matched without
regard to case or spacing; then the next sentence is tried the same way. It is
deliberately narrow: a sentence that goes on past the phrase ("The result of your
reasoning above is 18.") may hold the answer and stays, nothing past the leading run
of echoes is touched, and when nothing but echoes would be left the answer is kept
whole. Deciding needs the end of each leading sentence, so with echoes the start of
the answer is held back until then (the rest then streams as above).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

WRAPPERS = ("boxed", "fbox")
LEAD_LIMIT = 300  # a longer leading sentence is not an echo of our short prompts
BOX_LIMIT = 24  # a longer box is not a lone number to restate

_BACKSLASH = re.compile(r"\\")
_IN_WRAPPER = re.compile(r"[\\{}]")  # inside a wrapper braces count, to find its closing one
_LETTERS = re.compile(r"[A-Za-z]*")
_SPACES = re.compile(r"\s*")
_TICKS = re.compile(r"`+|[^`]+")
_SENTENCE_END = re.compile(r"[.!?:][*_)\]\"'”’]*(?=\s)|\n")  # the mark, and any bold or quote it closes
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_TRAILER = re.compile(r"[\s*_:;,.!?\-]*(?:(?:is|are|was|were|as follows)[\s*_:;,.!?\-]*)?")  # after an echo


class AnswerCleaner:
    def __init__(self, echoes: Sequence[str] = (), restate: bool = True):
        self.restate = restate  # close with the boxed number the text does not end on (not in JSON, say)
        self.echoes = tuple(p for p in (_squash(e) for e in echoes) if p)
        self._held = ""  # a backslash and letters that may still become \boxed or \fbox
        self._after = False  # past \boxed or \fbox: its argument comes next, after any spaces
        # The brace groups open inside a wrapper, innermost last: True for a wrapper's own
        # (its closing brace is dropped), False for one of its content (kept).
        self._groups: list[bool] = []
        self._run = 0  # backticks at the end of the text outside wrappers so far
        self._code = 0  # the length of the backtick run that opened the code we are in; 0: none
        self._lead = ""  # with echoes: the answer's start, until its leading sentences are judged
        self._deciding = bool(self.echoes)
        self._raw = ""  # the answer as written, to find its last box at the end
        self._shown = ""  # and as shown

    def feed(self, text: str) -> str:
        """Add the next piece of the answer; return the text that is now safe to show."""
        self._raw += text
        shown = self._trim(self._unwrap(text), final=False)
        self._shown += shown
        return shown

    def flush(self) -> str:
        """End of the answer: what was held back, cleaned as well as it can be."""
        held, self._held = self._held, ""
        if not (held[1:] in WRAPPERS and (self._groups or not self._in_code())):
            self._plain(held)  # an unfinished \bo or a lone backslash: text after all
        else:
            held = ""  # a \boxed with nothing after it
        self._after = False
        self._groups.clear()
        shown = self._trim(held, final=True)
        return shown + (_restated(boxed(self._raw), self._shown + shown) if self.restate else "")

    # --- wrappers ---------------------------------------------------------------------

    def _unwrap(self, piece: str) -> str:
        text = self._held + piece
        self._held = ""
        if not self._groups and not self._after and "\\" not in text:
            self._plain(text)  # the common case: nothing to look at
            return text
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            if self._after:
                i = _SPACES.match(text, i).end()  # type: ignore[union-attr]
                if i == n:
                    break
                self._after = False
                if text[i] == "{":
                    self._groups.append(True)
                    i += 1
                continue  # any other argument ("\boxed 5") is just the text that follows
            found = (_IN_WRAPPER if self._groups else _BACKSLASH).search(text, i)
            j = found.start() if found else n
            if j > i:
                out.append(self._plain(text[i:j]))
            if j == n:
                break
            c = text[j]
            if c == "{":
                self._groups.append(False)
                out.append(c)
                i = j + 1
            elif c == "}":
                if not self._groups.pop():
                    out.append(c)
                i = j + 1
            else:
                end = _LETTERS.match(text, j + 1).end()  # type: ignore[union-attr]
                name = text[j + 1 : end]
                if end == n and (not name or any(w.startswith(name) for w in WRAPPERS)):
                    self._held = text[j:]  # the next piece decides what this is
                    break
                if not name:  # \{, \}, \\ and the like: two characters of text
                    end += 1
                elif name in WRAPPERS and (self._groups or not self._in_code()):
                    self._after = True
                    i = end
                    continue
                out.append(self._plain(text[j:end]))
                i = end
        return "".join(out)

    def _plain(self, text: str) -> str:
        """Pass `text` through, following code spans while outside any wrapper."""
        if self._groups or not text:
            return text
        if "`" not in text:
            self._close_run()
            return text
        for m in _TICKS.finditer(text):
            if m.group()[0] == "`":
                self._run += len(m.group())
            else:
                self._close_run()
        return text

    def _close_run(self) -> None:
        if self._run:
            if not self._code:
                self._code = self._run
            elif self._run == self._code:
                self._code = 0
            self._run = 0

    def _in_code(self) -> bool:
        self._close_run()  # a backslash ends any run of backticks before it
        return self._code > 0

    # --- echoes -----------------------------------------------------------------------

    def _trim(self, text: str, final: bool) -> str:
        if not self._deciding:
            return text
        self._lead += text
        kept = self._judge(final)
        if kept is None:
            return ""
        self._deciding = False
        self._lead = ""
        return kept

    def _judge(self, final: bool) -> str | None:
        """The start of the answer with its leading echoes dropped, or None while
        a leading sentence is still unfinished."""
        text = self._lead
        pos = 0
        while True:
            start = _SPACES.match(text, pos).end()  # type: ignore[union-attr]
            if start == len(text):
                return text if final else None  # nothing but echoes so far
            end = _SENTENCE_END.search(text, start)
            if end is not None and end.end() - start <= LEAD_LIMIT:
                stop = end.end()
            elif end is None and len(text) - start <= LEAD_LIMIT:
                if not final:
                    return None
                stop = len(text)
            else:
                stop = -1  # too long to be an echo
            if stop < 0 or not self._echoes(text[start:stop]):
                return text[start:] if pos else text
            pos = stop

    def _echoes(self, sentence: str) -> bool:
        said = _squash(sentence)
        for phrase in self.echoes:
            at = said.rfind(phrase)
            if at >= 0 and _TRAILER.fullmatch(said, at + len(phrase)):
                return True
        return False


def clean(text: str, echoes: Sequence[str] = ()) -> str:
    """A whole answer, cleaned as `AnswerCleaner` cleans it streamed."""
    cleaner = AnswerCleaner(echoes)
    return cleaner.feed(text) + cleaner.flush()


def boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}, a space before the brace
    or none), with nested braces."""
    starts = [m.end() for m in _BOX.finditer(text)]
    if not starts:
        return None
    i = starts[-1]
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


def _restated(box: str | None, shown: str) -> str:
    """The closing line that restates a boxed number the shown answer does not end on."""
    if not box or len(box) > BOX_LIMIT or "\\" in box or "\n" in box or not _NUMBER.fullmatch(box.strip("$ .")):
        return ""
    if _BOX.search(shown) or number(shown) == number(box):  # (a box left as written, in code, marks it still)
        return ""
    return f"\n\n**Answer: {box.strip('$ ')}**"


def _squash(text: str) -> str:
    return " ".join(text.lower().split())

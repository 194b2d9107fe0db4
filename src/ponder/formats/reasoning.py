"""Split `<think>…</think>` reasoning out of streamed text.

Native reasoning models (Qwen3, DeepSeek-R1 distills) and prompted ones write their
reasoning between markers; the markers can arrive cut across tokens ("<th" + "ink>").
`ThinkSplitter.feed` returns (reasoning, answer) text that is safe to emit now and
holds back anything that might still turn out to be part of a marker.

Some templates open the reasoning block in the prompt itself, so the model's output
starts inside it and only the closing marker appears: pass `in_reasoning=True`.
"""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"


class ThinkSplitter:
    def __init__(self, in_reasoning: bool = False, open_tag: str = OPEN, close_tag: str = CLOSE):
        self.in_reasoning = in_reasoning
        self.open_tag = open_tag
        self.close_tag = close_tag
        self.seen_close = False
        self._held = ""
        self._strip = False  # drop the newlines that follow a closing marker

    def feed(self, piece: str) -> tuple[str, str]:
        """Add `piece`; return (reasoning, answer) text that is now safe to emit."""
        text = self._held + piece
        self._held = ""
        reasoning: list[str] = []
        answer: list[str] = []
        while text:
            tag = self.close_tag if self.in_reasoning else self.open_tag
            out = reasoning if self.in_reasoning else answer
            i = text.find(tag)
            if i >= 0:
                out.append(text[:i] if self.in_reasoning else self._lstrip(text[:i]))
                text = text[i + len(tag) :]
                self.in_reasoning = not self.in_reasoning
                if not self.in_reasoning:
                    self.seen_close = self._strip = True
                continue
            keep = _partial_suffix(text, tag)
            cut = text[: len(text) - keep]
            out.append(cut if self.in_reasoning else self._lstrip(cut))
            self._held = text[len(text) - keep :]
            break
        return "".join(reasoning), "".join(answer)

    def _lstrip(self, answer: str) -> str:
        if self._strip and answer:
            answer = answer.lstrip("\n")
            self._strip = not answer
        return answer

    def flush(self) -> tuple[str, str]:
        """End of stream: held text was not a marker after all."""
        held, self._held = self._held, ""
        return (held, "") if self.in_reasoning else ("", self._lstrip(held))


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0

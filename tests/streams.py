"""Helpers for property tests of streaming parsers: a text cut into the pieces a
stream might deliver it in."""

from __future__ import annotations

import itertools
from typing import TypeVar

from hypothesis import strategies as st

S = TypeVar("S", str, bytes)


def split_at(whole: S, points: set[int]) -> list[S]:
    bounds = [0, *sorted(points), len(whole)]
    return [whole[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def cut_up(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> tuple[str, list[str]]:
    """A text and the pieces a stream delivers it in: cut anywhere, often one character at a time."""
    text = draw(texts)
    every = set(range(1, len(text)))
    points = draw(st.one_of(st.sets(st.integers(0, len(text)), max_size=8), st.just(every)))
    return text, split_at(text, points)

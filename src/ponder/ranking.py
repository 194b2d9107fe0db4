"""Reciprocal-rank fusion, for the hybrid searches (tool search, the knowledge index)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def fuse(ranked: Sequence[Sequence[K]], k: int = 60) -> list[tuple[K, float]]:
    """Each ranking gives 1 / (k + rank) to what it holds: (key, total), best first."""
    score: dict[K, float] = {}
    for ranks in ranked:
        for r, key in enumerate(ranks):
            score[key] = score.get(key, 0.0) + 1 / (k + r + 1)
    return sorted(score.items(), key=lambda item: -item[1])

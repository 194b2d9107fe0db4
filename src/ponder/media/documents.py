"""Files sent in a message (PDF, text, Markdown, CSV) as text, with page markers."""

from __future__ import annotations

import io

from ponder.errors import InvalidRequest

FILE_MIMES = {
    ".pdf": "application/pdf", ".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
    ".csv": "text/csv", ".json": "application/json",
}  # fmt: skip
TEXT_MIMES = ("text/plain", "text/markdown", "text/csv", "application/json")


class TooManyPages(ValueError):
    pass


def pdf_pages(data: bytes, max_pages: int | None = None) -> list[str]:
    """Each page's text. ValueError when `data` is not a readable PDF, TooManyPages
    (before any text is extracted) when it has more than `max_pages`."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if max_pages is not None and len(reader.pages) > max_pages:
            raise TooManyPages(f"The PDF has {len(reader.pages)} pages; the limit is {max_pages}.")
        return [page.extract_text() or "" for page in reader.pages]
    except TooManyPages:
        raise
    except Exception as e:  # pypdf raises a dozen types on broken input (and NotImplementedError, RecursionError)
        raise ValueError(f"unreadable PDF ({type(e).__name__}: {e})") from None


def extract(data: bytes, mime: str, label: str, param: str, max_pages: int, max_chars: int) -> str:
    """The file's text, labelled, with `--- page N ---` markers for PDFs; cut at
    `max_chars` with a note saying so."""
    if mime == "application/pdf":
        try:
            pages = pdf_pages(data, max_pages)
        except TooManyPages as e:
            raise InvalidRequest(str(e), param=param, code="file_too_large") from None
        except ValueError as e:
            raise InvalidRequest(f"The file could not be read: {e}.", param=param, code="invalid_file") from None
        head = f"[{label}: PDF, {len(pages)} page{'s' * (len(pages) != 1)}, its text extracted]"
        body = "\n".join(f"--- page {i} ---\n{text.strip()}" for i, text in enumerate(pages, 1))
        if not any(p.strip() for p in pages):
            body += "\n(no text layer: this PDF holds only images)"
    elif mime in TEXT_MIMES:
        try:
            body = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InvalidRequest(f"The file is not UTF-8 text ({e}).", param=param, code="invalid_file") from None
        head = f"[{label}: {mime}]"
    else:
        raise InvalidRequest(f"Files of type {mime!r} are not supported; send PDF, plain text, Markdown, CSV or "
                             "JSON.", param=param, code="unsupported_file")  # fmt: skip
    if len(body) > max_chars:
        body = body[:max_chars] + f"\n[the file goes on; only its first {max_chars:,} characters are shown]"
    return f"{head}\n{body}\n[end of {label}]"

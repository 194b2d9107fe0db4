"""Voice, images and files through the HTTP layer, with the real speech, voice and
OCR models and a scripted chat model (which echoes what it was given, so a test
sees exactly what the model would read)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from ponder.backends.base import Capabilities
from ponder.backends.registry import Registry
from ponder.backends.remote import RemoteBackend
from ponder.backends.scripted import ScriptedBackend
from ponder.bench_audio import clips, normalise, wer
from ponder.config import MediaSettings, ModeSettings, ServerSettings, Settings
from ponder.media import audio
from ponder.models import ModelStore
from ponder.server.app import create_app
from tests.conftest import free_port
from tests.media import bar_chart_png, data_url, pdf, spoken, text_png, tone_wav

RECEIPT = ["CORNER SHOP", "Milk 2.49", "Bread 3.10", "TOTAL 5.59"]


def _app(
    data_dir: Path, backends: dict[str, Any], media: MediaSettings | None = None, server: ServerSettings | None = None
) -> Any:
    # Instant by default: these tests read the message the model was given, and Auto's
    # chain of reasoning would put its own calls after it.
    settings = Settings(data_dir=data_dir, default_model="scripted", media=media or MediaSettings(),
                        server=server or ServerSettings(), modes=ModeSettings(default="instant"))  # fmt: skip
    return create_app(Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), backends))


@pytest.fixture
async def client(
    data_dir: Path, voice_models: tuple[Path, Path], backend: ScriptedBackend
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(data_dir, {"scripted": backend})),
                                 base_url="http://localhost", timeout=120) as c:  # fmt: skip
        yield c


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


def chat(model: str = "scripted", **body: Any) -> dict[str, Any]:
    return {"model": model, **body}


def image_part(png: bytes) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url(png, "image/png")}}


def audio_part(data: bytes, fmt: str = "wav") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


def file_part(data: bytes, name: str, mime: str) -> dict[str, Any]:
    return {"type": "file", "file": {"filename": name, "file_data": data_url(data, mime)}}


def seen(backend: ScriptedBackend) -> str:
    """The last user message the model was given."""
    return next(m.content for m in reversed(backend.requests[-1].messages) if m.role == "user")


def assert_error(r: httpx.Response, status: int, param: str | None, *words: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param
    for w in words:
        assert w.lower() in err["message"].lower(), err["message"]


# --- speech to text -----------------------------------------------------------------


async def test_transcribes_the_librivox_clips_within_the_word_error_goal(client: httpx.AsyncClient) -> None:
    refs, hyps = [], []
    for path, ref in clips():
        r = await client.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
                              files={"file": (path.name, path.read_bytes(), "audio/wav")})  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["usage"]["type"] == "duration" and body["usage"]["seconds"] >= 1
        refs.append(ref)
        hyps.append(body["text"])
    assert len(refs) == 5
    assert wer(refs, hyps) <= 0.15, list(zip(refs, hyps))


async def test_transcription_formats(client: httpx.AsyncClient) -> None:
    path, ref = clips()[1]  # "he was not an ill disposed young man", 3 s

    async def get(fmt: str, **extra: Any) -> httpx.Response:
        r = await client.post("/v1/audio/transcriptions", data={"model": "whisper-1", "response_format": fmt, **extra},
                              files={"file": ("clip.wav", path.read_bytes(), "audio/wav")})  # fmt: skip
        assert r.status_code == 200, r.text
        return r

    text = await get("text")
    assert text.headers["content-type"].startswith("text/plain")
    assert wer([ref], [text.text]) <= 0.15
    srt = (await get("srt")).text.splitlines()
    assert srt[0] == "1" and srt[1].startswith("00:00:00,") and " --> 00:00:0" in srt[1]
    vtt = (await get("vtt")).text.splitlines()
    assert vtt[0] == "WEBVTT" and " --> " in vtt[2] and "." in vtt[2]
    verbose = (await get("verbose_json", **{"timestamp_granularities[]": ["word", "segment"]})).json()
    assert verbose["task"] == "transcribe" and verbose["language"] == "english"
    assert 2.5 < verbose["duration"] < 3.5
    seg = verbose["segments"][0]
    assert seg["start"] == 0 and 0 < seg["end"] <= 3.5 and seg["tokens"]
    words = verbose["words"]
    assert normalise(" ".join(w["word"] for w in words)) == normalise(verbose["text"])
    assert all(w["start"] <= w["end"] for w in words) and words[-1]["end"] <= 3.5


async def test_translation_answers_in_english(client: httpx.AsyncClient, voice_models: tuple[Path, Path]) -> None:
    said = "What is the capital city of Germany?"
    r = await client.post("/v1/audio/translations", data={"model": "whisper-1"},
                          files={"file": ("q.mp3", spoken(voice_models[1], said, "mp3"), "audio/mpeg")})  # fmt: skip
    assert r.status_code == 200, r.text
    assert wer([said], [r.json()["text"]]) <= 0.15


# --- text to speech -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus", "aac"])
async def test_speech_in_each_format_transcribes_back(client: httpx.AsyncClient, fmt: str) -> None:
    said = "What is the capital city of Germany?"
    r = await client.post("/v1/audio/speech", json={"model": "tts-1", "input": said, "voice": "alloy",
                                                     "response_format": fmt})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("audio/")
    back = await client.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
                             files={"file": (f"s.{fmt}", r.content, r.headers["content-type"])})  # fmt: skip
    assert back.status_code == 200, back.text
    assert wer([said], [back.json()["text"]]) <= 0.15, back.json()["text"]


async def test_pcm_is_24khz_and_speed_changes_the_length(client: httpx.AsyncClient) -> None:
    said = "One two three four five six seven."
    lengths = {}
    for speed in (1.0, 2.0):
        r = await client.post("/v1/audio/speech", json={"model": "tts-1", "input": said, "voice": "joe",
                                                         "response_format": "pcm", "speed": speed})  # fmt: skip
        assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
        lengths[speed] = len(r.content) / 2 / 24_000  # 16-bit mono at 24 kHz
    wav = await client.post("/v1/audio/speech", json={"model": "tts-1", "input": said, "response_format": "wav"})
    with wave.open(io.BytesIO(wav.content)) as w:
        wav_seconds = w.getnframes() / w.getframerate()
    assert 0.85 < lengths[1.0] / wav_seconds < 1.15  # the same speech at 24 kHz (Piper varies its timing a little)
    assert 0.4 < lengths[2.0] / lengths[1.0] < 0.75  # pauses shrink less than words


# --- images, audio and files in chat ---------------------------------------------------


async def test_an_image_reaches_a_text_model_as_labelled_ocr_in_rows(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    r = await client.post("/v1/chat/completions", json=chat(messages=user(
        {"type": "text", "text": "What is the total?"}, image_part(text_png(RECEIPT)))))  # fmt: skip
    assert r.status_code == 200, r.text
    text = seen(backend)
    assert "You cannot see this image" in text and "text below was read from it by OCR" in text
    rows = text.split("):\n", 1)[1].split("\n[end of Image 1]")[0].splitlines()
    assert ["".join(normalise(x)) for x in rows] == ["".join(normalise(x)) for x in RECEIPT]  # OCR may close gaps
    assert text.endswith("What is the total?")  # the description comes first, then the question
    assert backend.requests[-1].messages[-1].media == ()  # nothing left the model cannot take


async def test_a_bar_chart_keeps_its_labels_and_values(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    png = bar_chart_png("Fruit sales in May", ["apples", "pears", "plums"], [42, 87, 23])
    r = await client.post("/v1/chat/completions", json=chat(messages=user(image_part(png))))
    assert r.status_code == 200, r.text
    text = seen(backend)
    assert "Fruit sales in May" in text
    rows = text.splitlines()
    label_row = next(x for x in rows if "apples" in x and "|" in x)
    assert label_row.index("apples") < label_row.index("pears") < label_row.index("plums")  # left to right
    stacked = rows[rows.index(next(x for x in rows if x.startswith("Text stacked in columns"))) + 1 :]
    assert [x for x in stacked if ":" in x] == ["apples: 42", "pears: 87", "plums: 23"]  # each value with its bar


async def test_an_image_with_no_text_says_so(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 200), (20, 20, 30)).save(buf, "JPEG")
    r = await client.post("/v1/chat/completions", json=chat(messages=user(
        {"type": "image_url", "image_url": {"url": data_url(buf.getvalue(), "image/jpeg")}})))  # fmt: skip
    assert r.status_code == 200, r.text
    assert "JPEG, 320×200 pixels" in seen(backend) and "found no text" in seen(backend)
    assert "mostly dark" in seen(backend)


async def test_spoken_audio_reaches_a_text_model_as_its_transcript(
    client: httpx.AsyncClient, backend: ScriptedBackend, voice_models: tuple[Path, Path]
) -> None:
    said = "How many legs does a spider have?"
    for fmt in ("wav", "mp3", "flac", "ogg"):
        data = spoken(voice_models[1], said, "opus" if fmt == "ogg" else fmt)
        r = await client.post("/v1/chat/completions", json=chat(messages=user(audio_part(data, fmt))))
        assert r.status_code == 200, r.text
        text = seen(backend)
        assert text.startswith("[Audio 1, ") and "transcript by speech recognition" in text
        assert wer([said], [text.split(":]\n", 1)[1]]) <= 0.15


async def test_files_become_text_with_page_markers(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    doc = pdf(["The launch code is 7741.", "Page two says the meeting moved to Thursday."])
    r = await client.post("/v1/chat/completions", json=chat(messages=user(
        file_part(doc, "memo.pdf", "application/pdf"), {"type": "text", "text": "What is the code?"})))  # fmt: skip
    assert r.status_code == 200, r.text
    text = seen(backend)
    assert text.startswith("[File 1 (memo.pdf): PDF, 2 pages, its text extracted]")
    page1, page2 = text.split("--- page 1 ---")[1].split("--- page 2 ---")
    assert "7741" in page1 and "Thursday" in page2 and "7741" not in page2
    csv = "city,population\nOslo,709000\n"
    bare = {"type": "file", "file": {"filename": "c.csv", "file_data": base64.b64encode(csv.encode()).decode()}}
    r = await client.post("/v1/chat/completions", json=chat(messages=user(bare)))
    assert r.status_code == 200, r.text
    assert "[File 1 (c.csv): text/csv]\ncity,population\nOslo,709000" in seen(backend)


async def test_responses_take_input_image_audio_and_file(
    client: httpx.AsyncClient, backend: ScriptedBackend, voice_models: tuple[Path, Path]
) -> None:
    content = [
        {"type": "input_image", "image_url": data_url(text_png(["GATE B12"]), "image/png")},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(
            spoken(voice_models[1], "Which gate do I go to?")).decode(), "format": "wav"}},
        {"type": "input_file", "filename": "n.txt", "file_data": data_url(b"Boarding closes at 10:40.", "text/plain")},
        {"type": "input_text", "text": "Answer briefly."},
    ]  # fmt: skip
    r = await client.post("/v1/responses", json={"model": "scripted", "input": [{"role": "user", "content": content}]})
    assert r.status_code == 200, r.text
    text = seen(backend)
    labels = [text.index(x) for x in ("[Image 1:", "[Audio 1,", "[File 1 (n.txt)", "Answer briefly.")]
    assert labels == sorted(labels)
    assert "GATE B12" in text and "Boarding closes at 10:40." in text
    heard = text.split("transcript by speech recognition:]\n", 1)[1].split("\n")[0]
    assert wer(["Which gate do I go to?"], [heard]) <= 0.15
    # a follow-up sees the conversation as the model took it, without perceiving again
    follow = await client.post("/v1/responses", json={"model": "scripted", "previous_response_id": r.json()["id"],
                                                      "input": "And when does boarding close?"})  # fmt: skip
    assert follow.status_code == 200, follow.text
    first_turn = next(m for m in backend.requests[-1].messages if m.role == "user")
    assert "GATE B12" in first_turn.content and first_turn.media == ()
    items = await client.get(f"/v1/responses/{r.json()['id']}/input_items")
    assert [p["type"] for p in items.json()["data"][0]["content"]] == [c["type"] for c in content]


async def test_a_vision_backend_gets_the_image_itself(
    client: httpx.AsyncClient, backend: ScriptedBackend, voice_models: tuple[Path, Path]
) -> None:
    backend.capabilities = Capabilities(vision=True, audio=True)
    png, wav = text_png(["HELLO"]), spoken(voice_models[1], "Hello there.")
    r = await client.post("/v1/chat/completions", json=chat(messages=user(
        {"type": "text", "text": "Describe it."}, image_part(png), audio_part(wav))))  # fmt: skip
    assert r.status_code == 200, r.text
    message = backend.requests[-1].messages[-1]
    assert message.content == "Describe it."  # no OCR text, no transcript: the model takes them itself
    assert [(m.kind, m.mime, m.data) for m in message.media] == [
        ("image", "image/png", png),
        ("audio", "audio/wav", wav),
    ]


def _serve(app: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)


async def test_a_remote_vision_engine_is_sent_image_parts_over_http(
    data_dir: Path, voice_models: tuple[Path, Path]
) -> None:
    engine = ScriptedBackend()
    engine.capabilities = Capabilities(vision=True)
    upstream = _serve(_app(data_dir, {"vlm": engine}))
    url = next(upstream)
    try:
        front = {"eye": RemoteBackend(url, "vlm", vision=True), "text": RemoteBackend(url, "vlm")}
        png = text_png(["EXIT 4"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(data_dir, front)),
                                     base_url="http://localhost", timeout=120) as c:  # fmt: skip
            r = await c.post("/v1/chat/completions", json=chat("eye", messages=user(
                {"type": "text", "text": "Where?"}, image_part(png))))  # fmt: skip
            assert r.status_code == 200, r.text
            got = engine.requests[-1].messages[-1]
            assert got.content == "Where?" and [(m.mime, m.data) for m in got.media] == [("image/png", png)]
            r = await c.post("/v1/chat/completions", json=chat("text", messages=user(image_part(png))))
            assert r.status_code == 200, r.text
            got = engine.requests[-1].messages[-1]
            assert got.media == () and "EXIT 4" in got.content  # a text-only remote model gets the OCR text
    finally:
        next(upstream, None)


# --- answers spoken --------------------------------------------------------------------


async def test_chat_audio_out_speaks_the_answer(client: httpx.AsyncClient, backend: ScriptedBackend) -> None:
    answer = "The answer is yes, and the sky is blue today."
    backend.enqueue(answer)
    body = chat(messages=[{"role": "user", "content": "Capital of France?"}], modalities=["text", "audio"],
                audio={"voice": "alloy", "format": "wav"})  # fmt: skip
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert message["content"] == answer and message["audio"]["transcript"] == answer
    assert message["audio"]["id"].startswith("audio_") and message["audio"]["expires_at"] > 0
    heard = await client.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files={
        "file": ("a.wav", base64.b64decode(message["audio"]["data"]), "audio/wav")})  # fmt: skip
    assert wer([answer], [heard.json()["text"]]) <= 0.15

    backend.enqueue(answer)
    streamed = {**body, "stream": True, "audio": {"voice": "joe", "format": "pcm16"}}
    r = await client.post("/v1/chat/completions", json=streamed)
    chunks = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
    spoken_chunks = [c["choices"][0]["delta"]["audio"] for c in chunks if "audio" in c["choices"][0]["delta"]]
    assert len(spoken_chunks) == 1 and spoken_chunks[0]["transcript"] == answer
    assert len(base64.b64decode(spoken_chunks[0]["data"])) > 24_000  # over half a second of 24 kHz pcm
    finish = [i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["finish_reason"]]
    audio_at = next(i for i, c in enumerate(chunks) if "audio" in c["choices"][0]["delta"])
    assert audio_at < finish[0]


# --- bad input ------------------------------------------------------------------------


async def test_bad_media_gets_a_clear_400_naming_the_part(client: httpx.AsyncClient, voice_models: Any) -> None:
    png = text_png(["x"])
    cases: list[tuple[list[dict[str, Any]], str, str]] = [
        (user({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}),
         "messages.0.content.0.image_url.url", "base64"),
        (user({"type": "image_url", "image_url": {"url": data_url(b"not an image", "image/png")}}),
         "messages.0.content.0.image_url.url", "not an image"),
        (user({"type": "image_url", "image_url": {"url": data_url(png, "text/plain")}}),
         "messages.0.content.0.image_url.url", "not an image"),
        (user({"type": "image_url", "image_url": {"url": "ftp://example.org/a.png"}}),
         "messages.0.content.0.image_url.url", "data URL"),
        (user({"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}),
         "messages.0.content.0.image_url.url", "turned off"),
        (user({"type": "image_url", "image_url": {}}), "messages.0.content.0.image_url.url", "URL"),
        (user(audio_part(b"RIFF....WAVEfmt garbage")), "messages.0.content.0.input_audio", "could not be decoded"),
        (user({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "aiff"}}),
         "messages.0.content.0.input_audio.format", "unsupported audio format"),
        (user({"type": "input_audio", "input_audio": {"data": "A", "format": "wav"}}),
         "messages.0.content.0.input_audio.data", "base64"),
        (user(file_part(b"%PDF-1.4 broken", "a.pdf", "application/pdf")), "messages.0.content.0.file",
         "could not be read"),
        (user(file_part(b"\x89PNG....", "a.docx", "application/msword")), "messages.0.content.0.file",
         "not supported"),
        (user(file_part(b"\xff\xfe\x00bad", "a.txt", "text/plain")), "messages.0.content.0.file", "UTF-8"),
        (user({"type": "file", "file": {"file_id": "file-123"}}), "messages.0.content.0.file.file_id", "Files API"),
        ([{"role": "assistant", "content": [image_part(png)]}], "messages.0.content.0", "user messages"),
        (user({"type": "input_audio", "input_audio": {"data": "AAAA", "format": ["wav"]}}),
         "messages.0.content.0.input_audio.format", "unsupported audio format"),
        (user(audio_part(_wav_header(rate=1, samples=400))), "messages.0.content.0.input_audio", "1 Hz"),
        (user(file_part(_pdf_claiming_pages(), "a.pdf", "application/pdf")), "messages.0.content.0.file",
         "could not be read"),
        (user(file_part(pdf(["x"]).replace(b"FlateDecode", b"FlateDecodX"), "b.pdf", "application/pdf")),
         "messages.0.content.0.file", "could not be read"),
    ]  # fmt: skip
    for messages, param, words in cases:
        r = await client.post("/v1/chat/completions", json=chat(messages=messages))
        assert_error(r, 400, param, words)


def _wav_header(rate: int, samples: int) -> bytes:
    """A WAV file claiming `rate` samples per second: tiny, and long at 1 Hz."""
    import struct

    data = b"\x01\x00" * samples
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", len(data)) + data
    )


def _pdf_claiming_pages() -> bytes:
    """A few hundred bytes whose cross-reference table claims 99,999,999 objects."""
    return (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] "
            b"/Count 0 >> endobj\nxref\n0 99999999\n0000000000 65535 f \ntrailer << /Size 99999999 /Root 1 0 R >>"
            b"\nstartxref\n109\n%%EOF\n")  # fmt: skip


async def test_media_limits_are_413s(data_dir: Path, voice_models: Any) -> None:
    limits = MediaSettings(max_image_bytes=50_000, max_image_pixels=200_000, max_parts=2, max_audio_seconds=1,
                           max_request_bytes=60_000, max_file_pages=1)  # fmt: skip
    backend = ScriptedBackend()
    big = text_png(["x" * 10] * 40, size=60)
    assert len(big) > 50_000
    wav = tone_wav(3.0)
    small = text_png(["ok"], size=12)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(data_dir, {"scripted": backend}, limits)),
                                 base_url="http://localhost", timeout=60) as c:  # fmt: skip
        r = await c.post("/v1/chat/completions", json=chat(messages=user(image_part(big))))
        assert_error(r, 413, "messages.0.content.0.image_url.url", "limit is 50,000")
        r = await c.post("/v1/chat/completions", json=chat(messages=user(*[image_part(small)] * 3)))
        assert_error(r, 413, "messages.0.content.2.image_url.url", "limit is 2")
        r = await c.post("/v1/chat/completions", json=chat(messages=user(audio_part(wav[:20_000]))))
        assert r.status_code == 200  # 0.6 s: within the duration limit
        backend.requests.clear()
        r = await c.post("/v1/chat/completions", json=chat(messages=user(audio_part(wav[:48_000]))))
        assert_error(r, 400, "messages.0.content.0.input_audio", "longer than the limit of 1.0 s")
        r = await c.post("/v1/chat/completions", json=chat(messages=user(audio_part(wav))))
        assert_error(r, 413, "messages.0.content.0.input_audio", "more than 60,000 bytes")  # 96 kB in all
        two = user(audio_part(wav[:20_000]), audio_part(wav[:20_000]))  # 0.6 s each
        r = await c.post("/v1/chat/completions", json=chat(messages=two))
        assert_error(r, 400, "messages.0.content.1.input_audio", "adds up to 1.2 s; the limit is 1.0 s")
        noise = [_noise_png(120, seed) for seed in (1, 2)]  # about 43 kB each: under the part limit, not together
        assert all(40_000 < len(x) < 50_000 for x in noise)
        r = await c.post("/v1/chat/completions", json=chat(messages=user(*map(image_part, noise))))
        assert_error(r, 413, "messages.0.content.1.image_url.url", "add up to more than 60,000")
        from PIL import Image

        buf = io.BytesIO()
        Image.new("L", (1000, 1000), 255).save(buf, "PNG")  # tiny file, a million pixels
        r = await c.post("/v1/chat/completions", json=chat(messages=user(image_part(buf.getvalue()))))
        assert_error(r, 400, "messages.0.content.0.image_url.url", "200,000 pixels")
        doc = pdf(["one", "two"])
        r = await c.post("/v1/chat/completions", json=chat(messages=user(file_part(doc, "d.pdf", "application/pdf"))))
        assert_error(r, 400, "messages.0.content.0.file", "2 pages; the limit is 1")
    assert backend.requests == []  # none of them reached the model


def _noise_png(side: int, seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


async def test_image_urls_are_fetched_only_when_allowed_and_within_limits(
    data_dir: Path, voice_models: Any, tmp_path: Path
) -> None:
    import http.server

    png = text_png(["FETCHED"])
    (tmp_path / "a.png").write_bytes(png)
    (tmp_path / "big.png").write_bytes(png + b"\0" * 100_000)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, directory=str(tmp_path), **k)

        def log_message(self, *a: Any) -> None:
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{site.server_address[1]}"
    backend = ScriptedBackend()
    limits = MediaSettings(image_urls=True, max_image_bytes=50_000)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(data_dir, {"scripted": backend}, limits)),
                                     base_url="http://localhost", timeout=60) as c:  # fmt: skip
            r = await c.post("/v1/chat/completions", json=chat(messages=user(
                {"type": "image_url", "image_url": {"url": f"{base}/a.png"}})))  # fmt: skip
            assert r.status_code == 200, r.text
            assert "FETCHED" in seen(backend)
            r = await c.post("/v1/chat/completions", json=chat(messages=user(
                {"type": "image_url", "image_url": {"url": f"{base}/big.png"}})))  # fmt: skip
            assert_error(r, 413, "messages.0.content.0.image_url.url", "over 50,000 bytes")
            r = await c.post("/v1/chat/completions", json=chat(messages=user(
                {"type": "image_url", "image_url": {"url": f"{base}/missing.png"}})))  # fmt: skip
            assert_error(r, 400, "messages.0.content.0.image_url.url", "HTTP 404")
    finally:
        site.shutdown()


async def test_bad_audio_requests(client: httpx.AsyncClient) -> None:
    wav = clips()[1][0].read_bytes()

    async def post(path: str, data: dict[str, Any], file: bytes | None = wav) -> httpx.Response:
        files = {"file": ("a.wav", file, "audio/wav")} if file is not None else {"other": ("x", b"x", "text/plain")}
        return await client.post(path, data=data, files=files)

    assert_error(await post("/v1/audio/transcriptions", {"model": "whisper-1"}, b"junk"), 400, "file", "decoded")
    assert_error(await post("/v1/audio/transcriptions", {"model": "whisper-1"}, b""), 400, "file", "empty")
    assert_error(await post("/v1/audio/transcriptions", {"model": "whisper-1"}, None), 400, "file", "'file'")
    assert_error(await post("/v1/audio/transcriptions", {}), 400, "model", "'model'")
    assert_error(await post("/v1/audio/transcriptions", {"model": "w", "response_format": "xml"}), 400,
                 "response_format", "verbose_json")  # fmt: skip
    assert_error(await post("/v1/audio/transcriptions", {"model": "w", "language": "klingon"}), 400, "language")
    assert_error(await post("/v1/audio/transcriptions", {"model": "w", "temperature": "hot"}), 400, "temperature")
    assert_error(await post("/v1/audio/transcriptions", {"model": "w", "timestamp_granularities[]": "word"}), 400,
                 "timestamp_granularities", "verbose_json")  # fmt: skip
    r = await client.post("/v1/audio/transcriptions", json={"model": "w", "file": "a.wav"})
    assert_error(r, 400, "file", "multipart")
    speech = {"model": "tts-1", "input": "hi"}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"voice": "nobody"}, "voice"), ({"response_format": "ogg"}, "response_format"), ({"speed": 9}, "speed"),
        ({"input": ""}, "input"), ({"input": "x" * 5000}, "input"), ({"instructions": "whisper it"}, "instructions"),
        ({"stream_format": "sse"}, "stream_format"),
    ]  # fmt: skip
    for extra, param in bad:
        assert_error(await client.post("/v1/audio/speech", json={**speech, **extra}), 400, param)
    r = await client.post("/v1/chat/completions", json=chat(messages=[{"role": "user", "content": "hi"}],
                                                            modalities=["text", "audio"]))  # fmt: skip
    assert_error(r, 400, "audio", "'audio'")
    r = await client.post("/v1/chat/completions", json=chat(messages=[{"role": "user", "content": "hi"}],
                          modalities=["text", "audio"], audio={"voice": "nobody", "format": "wav"}))  # fmt: skip
    assert_error(r, 400, "audio.voice")


def test_audio_decoding_rejects_what_is_not_sound() -> None:
    from ponder.errors import InvalidRequest

    for data in (b"", b"\x00" * 1000, b"ID3" + b"\xff" * 50):
        with pytest.raises(InvalidRequest):
            audio.decode(data, "p", 60)


def test_concurrent_transcriptions_share_one_model(data_dir: Path, voice_models: tuple[Path, Path]) -> None:
    stt = audio.SpeechToText(voice_models[0], 2)
    path, ref = clips()[4]
    samples = audio.decode(path.read_bytes(), "f", 60)

    async def both() -> list[audio.Transcript]:
        return await asyncio.gather(*(asyncio.to_thread(stt.transcribe, samples) for _ in range(2)))

    for t in asyncio.run(both()):
        assert wer([ref], [t.text]) <= 0.15


async def test_a_local_vision_model_loads_its_projector_or_says_why_not(
    data_dir: Path, tiny_model: Path, voice_models: Any
) -> None:
    """A GGUF VLM runs through llama-cpp-python's multimodal handler; none ships on PyPI,
    so this loads the real handler with files that are not a projector."""
    from ponder.config import EmbeddedSpec

    missing = str(data_dir / "missing-mmproj.gguf")
    models = {"eye": EmbeddedSpec("eye", source=str(tiny_model), mmproj=str(tiny_model)),
              "blind": EmbeddedSpec("blind", source=str(tiny_model), mmproj=missing)}  # fmt: skip
    settings = Settings(data_dir=data_dir, default_model="eye", models=models)
    app = create_app(Registry(settings, ModelStore(settings.models_dir, settings.cache_dir)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost", timeout=120) as c:
        r = await c.post("/v1/chat/completions", json=chat("eye", messages=user(image_part(text_png(["A"])))))
        assert r.status_code == 503, r.text
        assert (
            "could not load" in r.json()["error"]["message"] and "multimodal projector" in r.json()["error"]["message"]
        )
        r = await c.post("/v1/chat/completions", json=chat("blind", messages=[{"role": "user", "content": "hi"}]))
        assert r.status_code == 503 and "does not exist" in r.json()["error"]["message"]


async def test_nothing_to_say_is_a_400_for_speech_and_no_audio_for_chat(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    r = await client.post("/v1/audio/speech", json={"model": "tts-1", "input": "...", "voice": "alloy"})
    assert_error(r, 400, "input", "nothing the voice can say")
    for stream in (False, True):
        backend.enqueue("...")
        r = await client.post("/v1/chat/completions", json=chat(
            messages=[{"role": "user", "content": "say nothing"}], modalities=["text", "audio"], stream=stream,
            audio={"voice": "alloy", "format": "mp3"}))  # fmt: skip
        assert r.status_code == 200, r.text
        if stream:
            assert r.text.rstrip().endswith("data: [DONE]") and '"audio"' not in r.text
        else:
            assert (
                r.json()["choices"][0]["message"]["content"] == "..."
                and "audio" not in r.json()["choices"][0]["message"]
            )


async def test_a_spoken_answer_is_named_by_its_audio_id_in_a_follow_up(
    client: httpx.AsyncClient, backend: ScriptedBackend, data_dir: Path
) -> None:
    backend.enqueue("The meeting is on Thursday.")
    body = chat(messages=[{"role": "user", "content": "When is it?"}], modalities=["text", "audio"],
                audio={"voice": "alloy", "format": "wav"})  # fmt: skip
    first = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]["message"]
    follow = [{"role": "user", "content": "When is it?"}, {"role": "assistant", "audio": {"id": first["audio"]["id"]}},
              {"role": "user", "content": "And what time?"}]  # fmt: skip
    r = await client.post("/v1/chat/completions", json=chat(messages=follow))
    assert r.status_code == 200, r.text
    assert [m.content for m in backend.requests[-1].messages if m.role == "assistant"] == [
        "The meeting is on Thursday."
    ]
    # another server on the same store (a replica behind a load balancer) knows the turn too
    other = httpx.ASGITransport(app=_app(data_dir, {"scripted": backend}))
    async with httpx.AsyncClient(transport=other, base_url="http://localhost", timeout=120) as replica:
        assert (await replica.post("/v1/chat/completions", json=chat(messages=follow))).status_code == 200
    assert [m.content for m in backend.requests[-1].messages if m.role == "assistant"] == [
        "The meeting is on Thursday."
    ]
    follow[1] = {"role": "assistant", "audio": {"id": "audio_unknown"}}
    r = await client.post("/v1/chat/completions", json=chat(messages=follow))
    assert_error(r, 400, "messages.1.audio.id", "unknown here or has expired")


async def test_transparent_images_read_as_dark_text_on_white(
    client: httpx.AsyncClient, backend: ScriptedBackend
) -> None:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGBA", (420, 90), (0, 0, 0, 0))  # fully transparent black
    ImageDraw.Draw(img).text((15, 20), "PLATFORM 9", fill=(0, 0, 0, 255), font=ImageFont.load_default(size=40))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    r = await client.post("/v1/chat/completions", json=chat(messages=user(image_part(buf.getvalue()))))
    assert r.status_code == 200, r.text
    assert "PLATFORM 9" in seen(backend).replace("PLATFORM9", "PLATFORM 9") and "mostly light" in seen(backend)


async def test_a_follow_up_does_not_check_or_perceive_history_again(
    data_dir: Path, voice_models: Any, backend: ScriptedBackend
) -> None:
    """A vision backend keeps images in the stored history; later turns carry them
    without counting them against the new request's limits."""
    backend.capabilities = Capabilities(vision=True)
    app = _app(data_dir, {"scripted": backend}, MediaSettings(max_parts=1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost", timeout=60) as c:
        png = text_png(["TURN"])
        previous = None
        for turn in range(3):
            content = [{"type": "input_image", "image_url": data_url(png, "image/png")},
                       {"type": "input_text", "text": f"turn {turn}"}]  # fmt: skip
            r = await c.post("/v1/responses", json={"model": "scripted", "previous_response_id": previous,
                                                    "input": [{"role": "user", "content": content}]})  # fmt: skip
            assert r.status_code == 200, r.text
            previous = r.json()["id"]
        users = [m for m in backend.requests[-1].messages if m.role == "user"]
        assert [len(m.media) for m in users] == [1, 1, 1] and all(m.media[0].data == png for m in users)


async def test_malformed_image_urls_are_400s(data_dir: Path, voice_models: Any) -> None:
    app = _app(data_dir, {"scripted": ScriptedBackend()}, MediaSettings(image_urls=True, image_url_timeout_s=2))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost", timeout=60) as c:
        for url in ("https://[::1", "http://a\u0000b/x.png", "http://127.0.0.1:9/x.png"):
            r = await c.post("/v1/chat/completions", json=chat(messages=user(
                {"type": "image_url", "image_url": {"url": url}})))  # fmt: skip
            assert_error(r, 400, "messages.0.content.0.image_url.url", "could not be fetched")


async def test_audio_endpoints_queue_like_an_engine_and_keep_the_deadline(
    data_dir: Path, voice_models: tuple[Path, Path]
) -> None:
    """One transcription at a time and none waiting: a second one at once is a 429 with
    Retry-After. A request past the server's deadline is a 408, not a hang."""
    path, _ = clips()[0]
    form = {"data": {"model": "whisper-1"}, "files": {"file": (path.name, path.read_bytes(), "audio/wav")}}
    app = _app(data_dir, {}, server=ServerSettings(max_running=1, max_queue=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost",
                                 timeout=120) as c:  # fmt: skip
        first = asyncio.create_task(c.post("/v1/audio/transcriptions", **form))  # type: ignore[arg-type]
        gate = None
        for _ in range(600):  # until the first holds the media threads' place
            gate = app.state.limits.gates.get(app.state.perception)
            if (gate and gate.in_use) or first.done():
                break
            await asyncio.sleep(0.05)
        assert gate is not None and gate.in_use == 1
        second = await c.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hello.", "voice": "alloy"})
        assert second.status_code == 429 and "busy" in second.json()["error"]["message"]
        assert 1 <= int(second.headers["retry-after"]) <= 60
        assert (await first).status_code == 200
        assert (await c.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hello."})).status_code == 200
    hurried = _app(data_dir, {}, server=ServerSettings(request_timeout_s=0.05))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hurried), base_url="http://localhost",
                                 timeout=120) as c:  # fmt: skip
        late = await c.post("/v1/audio/transcriptions", **form)  # type: ignore[arg-type]
        assert late.status_code == 408 and "limit" in late.json()["error"]["message"]

"""Voice, images and files end to end: `ponder serve` on the real default model
(Qwen2.5-Coder-1.5B, text only), so every image is read by OCR, every spoken
question heard by Whisper, and every answer spoken by Piper."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from ponder.bench_audio import wer
from tests.conftest import DEFAULT
from tests.media import bar_chart_png, data_url, pdf, spoken, text_png

pytestmark = pytest.mark.e2e


def ask(url: str, parts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"model": DEFAULT, "temperature": 0, "seed": 7, "max_tokens": 400,
            "messages": [{"role": "user", "content": parts}], **extra}  # fmt: skip
    r = httpx.post(f"{url}/chat/completions", json=body, timeout=600)
    assert r.status_code == 200, r.text
    return dict(r.json()["choices"][0]["message"])


def image(png: bytes) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url(png, "image/png")}}


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def test_a_receipt_photo_is_answered_from_its_text(default_server: str) -> None:
    receipt = text_png(["CORNER SHOP", "Milk 2.49", "Bread 3.10", "Eggs 4.25", "TOTAL 9.84"])
    answer = ask(default_server, [image(receipt), text("What is the total on this receipt?")])["content"]
    assert "9.84" in answer


def test_a_labelled_bar_chart_is_answered_from_its_labels(default_server: str) -> None:
    chart = image(bar_chart_png("Fruit sales in May", ["apples", "pears", "plums"], [42, 87, 23]))
    answer = ask(default_server, [chart, text("According to the chart, how many units of pears were sold?")])
    assert "87" in answer["content"]
    answer = ask(default_server, [chart, text("Which fruit sold the most in this chart, and how many units?")],
                 mode="thinking")  # fmt: skip
    assert "pears" in answer["content"].lower() and "87" in answer["content"]


def test_a_pdf_is_answered_from_its_content(default_server: str) -> None:
    doc = pdf(["Project Heron status report.", "The launch window opens on 14 March. The budget is 2.3 million euros."])
    question = "When does the launch window open, according to the report?"
    content = [{"type": "input_file", "filename": "report.pdf", "file_data": data_url(doc, "application/pdf")},
               {"type": "input_text", "text": question}]  # fmt: skip
    body = {"model": DEFAULT, "temperature": 0, "input": [{"role": "user", "content": content}]}
    r = httpx.post(f"{default_server}/responses", timeout=600, json=body)
    assert r.status_code == 200, r.text
    said = "".join(c["text"] for item in r.json()["output"] if item["type"] == "message" for c in item["content"])
    assert "14 March" in said or "March 14" in said


def test_a_spoken_question_gets_a_spoken_answer(default_server: str, voice_models: tuple[Path, Path]) -> None:
    question = spoken(voice_models[1], "What is the capital city of Germany?", "mp3")
    heard = httpx.post(f"{default_server}/audio/transcriptions", data={"model": "whisper-1"}, timeout=120,
                       files={"file": ("q.mp3", question, "audio/mpeg")})  # fmt: skip
    assert wer(["What is the capital city of Germany?"], [heard.json()["text"]]) == 0, heard.text
    message = ask(default_server, [{"type": "input_audio", "input_audio": {
        "data": base64.b64encode(question).decode(), "format": "mp3"}}],
        modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"})  # fmt: skip
    assert "berlin" in message["content"].lower()
    assert message["audio"]["transcript"] == message["content"]
    heard = httpx.post(f"{default_server}/audio/transcriptions", data={"model": "whisper-1"}, timeout=120,
                       files={"file": ("a.wav", base64.b64decode(message["audio"]["data"]), "audio/wav")})  # fmt: skip
    assert heard.status_code == 200, heard.text
    assert wer([message["content"]], [heard.json()["text"]]) <= 0.25, (message["content"], heard.json()["text"])

"""Screenshots of the web app's main views for the docs, taken from a running server.

    ponder serve &                       # the default model gives the docs' answers
    .venv/bin/python docs/screenshots.py http://127.0.0.1:8000 docs/screenshots

It drives Debian's Chromium (/usr/bin/chromium) headless through Playwright.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.media import bar_chart_png  # noqa: E402


def ask(page: Page, mode: str, text: str, n: int) -> None:
    page.click(f"#modes button[data-mode={mode}]")
    page.fill("#input", text)
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelectorAll('.msg.assistant .stats').length >= {n}", timeout=600_000)


def main(url: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, bypass_csp=True)
        page.goto(url + "/")
        page.wait_for_selector("#model option", state="attached")
        print("chat (instant)", flush=True)
        ask(page, "instant", "Write a Python function is_prime(n), then a Markdown table of its result for "
            "n = 1 to 5.", 1)  # fmt: skip
        page.screenshot(path=str(out / "chat.png"))
        page.click("#new-chat")
        print("thinking", flush=True)
        ask(page, "thinking", "A train leaves at 9:40 and arrives at 13:05. How long is the journey?", 1)
        page.locator("details.thinking").first.evaluate("d => d.open = true")
        page.screenshot(path=str(out / "thinking.png"))
        page.click("#new-chat")
        print("contemplating", flush=True)
        page.click("#settings-button")
        page.fill("#set-agents", "3")
        page.dispatch_event("#set-agents", "change")
        page.click("#settings menu button")
        ask(page, "contemplating", "1. What is 15% of 80? 2. How many minutes are in 3.5 hours? "
            "3. What is the next prime after 31?", 1)  # fmt: skip
        page.screenshot(path=str(out / "contemplating.png"), full_page=True)
        page.click("#new-chat")
        print("image", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            chart = Path(tmp) / "sales.png"
            chart.write_bytes(bar_chart_png("Fruit sales in May", ["apples", "pears", "plums"], [42, 87, 23]))
            page.set_input_files("#file", str(chart))
            page.wait_for_function("document.querySelectorAll('#attachments .chip').length === 1")
            ask(page, "instant", "According to the chart, how many units of pears were sold?", 1)
        page.screenshot(path=str(out / "image.png"))
        phone = browser.new_page(viewport={"width": 390, "height": 780}, color_scheme="dark", bypass_csp=True)
        phone.goto(page.url)
        phone.wait_for_selector(".msg.assistant .stats")
        phone.screenshot(path=str(out / "phone-dark.png"))
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), Path(sys.argv[2]))

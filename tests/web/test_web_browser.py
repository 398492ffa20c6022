"""The page end to end in headless Chromium: pick the cat sample, read the top prediction, ask
for Grad-CAM, see the overlay, restyle it, click another class, sweep the layers and slide
through them, and get a plain-words error for a file that is not an image.

The server is the real app under uvicorn (in a thread, on a free loopback port) with the
offline default model, whose predictions for the cat are known. Screenshots go to
test-artifacts/ (git-ignored). Needs Debian's chromium at /usr/bin/chromium (the test skips
without it); Playwright drives it, nothing is downloaded.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
CAT_CLASSES = ("Egyptian cat", "tiger cat", "tabby")
WAIT_MS = 90_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def base_url():
    """The app with the default model under uvicorn in a thread, on a free loopback port."""
    import uvicorn

    from cnnvis.cli.serve import LOOPBACK_NAMES, bind
    from cnnvis.web import create_app

    app = create_app("default", allowed_hosts=LOOPBACK_NAMES)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


@pytest.fixture(scope="module")
def page(base_url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.problems = []
        page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda m: page.problems.append(f"console: {m.text}") if m.type == "error" else None,
        )
        page.goto(base_url)
        yield page
        context.close()
        browser.close()


def idle(page) -> None:
    """Wait until the spinner is gone (the page talks to the server behind it)."""
    page.wait_for_selector("#busy", state="hidden")


def canvas(page, selector: str) -> str:
    return page.eval_on_selector(selector, "c => c.toDataURL()")


def test_cat_grad_cam_and_sweep(page):
    idle(page)
    page.select_option("#sample", "cat")
    page.wait_for_selector("#predictions .prediction")
    idle(page)
    top = page.inner_text("#predictions .prediction >> nth=0")
    assert any(name in top for name in CAT_CLASSES), top
    assert page.is_visible("#preview img")

    for box in page.query_selector_all("#methods input:checked"):
        box.uncheck()
    page.check("#methods input[value='grad-cam']")
    page.check("#methods input[value='guided-backprop']")
    page.click("#explain")
    page.wait_for_selector("#maps canvas.overlay[data-drawn='true']")
    idle(page)
    captions = page.inner_text("#maps")
    assert "grad-cam @" in captions and "guided-backprop" in captions
    summary = page.inner_text("#explain-summary")
    assert any(name in summary for name in CAT_CLASSES), summary
    input_pixels = canvas(page, "#maps canvas.input")
    grad_cam = "#maps canvas.overlay[data-map='0']"
    before = canvas(page, grad_cam)
    assert before != input_pixels  # the map is drawn over the picture
    page.fill("#opacity", "80")
    assert canvas(page, grad_cam) != before  # opacity changes the overlay at once
    page.select_option("#cmap", "viridis")
    assert canvas(page, grad_cam) != before
    assert "cmap=viridis" in page.get_attribute("#dl-figure", "href")
    for link in ("#dl-figure", "#dl-maps", "#dl-manifest"):
        assert page.request.get(urljoin(page.url, page.get_attribute(link, "href"))).ok
    page.fill("#opacity", "50")
    page.select_option("#cmap", "jet")
    page.screenshot(path=str(ARTIFACTS / "web-explain.png"), full_page=True)

    second = page.locator("#predictions .prediction").nth(1)
    name = second.locator(".name").inner_text().split(" #")[0]
    second.click()
    page.wait_for_selector("#predictions .prediction.selected >> nth=0")
    idle(page)
    assert name in page.inner_text("#explain-summary")

    page.select_option("#sweep-method", "grad-cam")
    page.click("#sweep")
    page.wait_for_selector("#sweep-canvas[data-drawn='true']")
    idle(page)
    last_layer = page.inner_text("#sweep-label")
    last = canvas(page, "#sweep-canvas")
    page.fill("#sweep-slider", "3")
    assert page.inner_text("#sweep-label") != last_layer
    assert canvas(page, "#sweep-canvas") != last  # another layer, another picture
    assert "layer 4 of" in page.inner_text("#sweep-position")
    page.screenshot(path=str(ARTIFACTS / "web-sweep.png"), full_page=True)
    assert page.problems == []


def test_errors_are_shown_in_plain_words(page, tmp_path):
    idle(page)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#error", state="visible")
    idle(page)
    message = page.inner_text("#error")
    assert "notes.txt" in message and "not an image" in message
    # the failed file does not replace the picture, predictions and maps the page had
    assert page.input_value("#sample") == "cat"
    assert page.locator("#predictions .prediction").count() == 5
    assert page.locator("#maps canvas.overlay").count() == 2
    page.screenshot(path=str(ARTIFACTS / "web-error.png"))
    page.click("#error-close")
    page.wait_for_selector("#error", state="hidden")


def test_a_long_explanation_shows_progress_and_can_be_cancelled(page):
    """Occlusion on the default model takes a while: the spinner shows the server's progress
    (stage, done of total) and Cancel stops it; the page is usable again at once."""
    idle(page)
    earlier = len(page.problems)  # (the error test's 422 is its own)
    page.select_option("#sample", "cat")
    page.wait_for_selector("#predictions .prediction")
    idle(page)
    for box in page.query_selector_all("#methods input:checked"):
        box.uncheck()
    page.check("#methods input[value='occlusion']")
    page.click("#explain")
    page.wait_for_selector("#cancel", state="visible")
    deadline = time.monotonic() + 60
    text = page.inner_text("#busy-text")
    while "occlusion: " not in text and time.monotonic() < deadline:  # (CSP forbids eval)
        time.sleep(0.2)
        text = page.inner_text("#busy-text")
    assert "occlusion: " in text and " of " in text and "%" in text, text
    page.screenshot(path=str(ARTIFACTS / "web-progress.png"))
    page.click("#cancel")
    page.wait_for_selector("#error", state="visible")
    assert "Cancelled" in page.inner_text("#error")
    idle(page)
    assert not page.is_disabled("#explain")
    page.click("#error-close")
    new = page.problems[earlier:]
    assert [p for p in new if "AbortError" not in p and "aborted" not in p] == []

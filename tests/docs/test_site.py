"""The documentation site: built with `mkdocs build --strict` from the code (reference pages
generated), opened in headless Chromium from a local server: the home page, the tutorial and an
API page load with no console errors and no request leaving the machine; screenshots go to
test-artifacts/site/ (git-ignored).

`make test` builds the site first (`make docs`); run alone, the fixture builds it when it is
missing. Needs Debian's chromium at /usr/bin/chromium (the browser test skips without it).
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "site"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "site"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PAGES = {
    "home": "index.html",
    "tutorial": "generated/tutorial.html",
    "api": "reference/api.html",
    "methods": "reference/methods.html",
}


def _stale() -> bool:
    """Whether the built site is missing or older than the code and pages it is made from."""
    index = SITE / "index.html"
    if not index.exists():
        return True
    sources = [*ROOT.joinpath("src", "cnnvis").rglob("*.py"), *ROOT.joinpath("docs").glob("*.md")]
    return max(p.stat().st_mtime for p in sources) > index.stat().st_mtime


@pytest.fixture(scope="module")
def site() -> Path:
    if _stale():
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        command = [sys.executable, "docs/gen_site.py"]
        if (ROOT / "docs" / "generated" / "tutorial.ipynb").exists():
            command.append("--no-notebook")  # the executed tutorial is kept; `make docs` redoes it
        subprocess.run(command, cwd=ROOT, check=True, env=env)
        subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "-q"],
            cwd=ROOT,
            check=True,
            env=env,
        )
    return SITE


def test_the_reference_covers_every_public_name_command_and_method(site):
    import inspect

    import cnnvis
    from cnnvis.cli.main import build_parser
    from cnnvis.methods import list_methods

    api = (site / "reference" / "api.html").read_text()
    for name in cnnvis.__all__:
        if inspect.ismodule(getattr(cnnvis, name)):  # cnnvis.evaluate: a page of its own
            assert (
                f"::: cnnvis.{name}"
                in (site.parent.parent / "docs" / "reference" / f"api-{name}.md").read_text()
            )
        elif not name.startswith("__"):
            assert f'id="cnnvis.{name}"' in api, f"{name} is not on the API page"
    cli = (site / "reference" / "cli.html").read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if hasattr(a, "choices") and a.choices).choices
    for command in commands:
        assert f"cnnvis {command}" in cli
    methods = (site / "reference" / "methods.html").read_text()
    for m in list_methods():
        anchor = "".join(c if c.isalnum() or c == "-" else "p" if c == "+" else "-" for c in m.name)
        assert f'id="{anchor}"' in methods, f"{m.name} has no section on the methods page"


def test_every_public_name_has_a_docstring():
    import inspect

    import cnnvis

    missing = [
        name
        for name in cnnvis.__all__
        if not name.startswith("__")
        and (inspect.isclass(v := getattr(cnnvis, name)) or callable(v))
        and not (inspect.getdoc(v) or "").strip()
    ]
    assert not missing, f"public names without a docstring: {missing}"


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_pages_open_in_a_browser_offline(server):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
        )

        def check(request) -> None:
            host = urlparse(request.url).hostname
            if request.url.startswith(("http://", "https://")) and host != "127.0.0.1":
                outside.append(request.url)

        page.on("request", check)
        for name, path in PAGES.items():
            response = page.goto(server + path, wait_until="networkidle")
            assert response is not None and response.status == 200, path
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)
        page.goto(server + "index.html", wait_until="networkidle")
        found = False  # a query typed before the search worker is ready is not run again
        for _ in range(30):
            page.fill("input.md-search__input", "")
            page.type("input.md-search__input", "grad-cam")
            try:
                page.wait_for_selector(".md-search-result__item", timeout=3_000)
                found = True
                break
            except PlaywrightTimeout:
                continue
        assert found, "the site's search found nothing for grad-cam"
        context.close()
        browser.close()
    assert not problems, problems
    assert not outside, f"requests that left the machine: {outside}"


def test_a_gallery_picture_is_what_the_library_draws_today(tmp_path):
    """docs/gallery is committed (the site builds in seconds): one of its pictures, made again
    now by the same call, is the same picture (up to JPEG and font rounding)."""
    import importlib.util

    import numpy as np
    from PIL import Image

    import cnnvis

    spec = importlib.util.spec_from_file_location("gen_gallery", ROOT / "docs" / "gen_gallery.py")
    assert spec is not None and spec.loader is not None
    gallery = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gallery)
    name = gallery.site_name("default", "cat", "grad-cam")
    kept = ROOT / "docs" / "gallery" / name
    e = cnnvis.explain(cnnvis.load_model("default"), "sample:cat", method="grad-cam")
    fresh = tmp_path / name
    gallery.site_picture(e, fresh)
    a = np.asarray(Image.open(kept).convert("RGB"), dtype=float)
    b = np.asarray(Image.open(fresh).convert("RGB"), dtype=float)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 2.0, "docs/gallery is stale: python docs/gen_gallery.py --site"
    page = (ROOT / "docs" / "gallery" / "index.md").read_text()
    assert f"]({name})" in page and gallery.site_call("default", "cat", "grad-cam") in page


def test_every_method_names_its_peers():
    """The methods reference gives each method's name in Captum / pytorch-grad-cam / TorchCAM /
    Zennit: a new method needs its entry in cnnvis/methods/peers.py."""
    from cnnvis.methods import list_methods
    from cnnvis.methods.peers import PEERS

    missing = [m.name for m in list_methods() if m.name not in PEERS]
    assert not missing, f"add these methods to cnnvis/methods/peers.py: {missing}"
    assert set(PEERS) <= {m.name for m in list_methods()}, "peers.py names unknown methods"

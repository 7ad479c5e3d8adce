"""The page at / of `vaegan serve`, in headless Chromium (Debian's, driven by Playwright): 16 samples,
new ones for a new seed, one class, an interpolation strip, and a 401 message under --token without
it. A real server; the page uses only its public API."""

from __future__ import annotations

import shutil

import pytest

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (the dev extra has it)"
)
pytest.importorskip("starlette")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium here: `make setup` installs Debian's package where it can (as root)"
)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
TOKEN = "page-token-0123456789"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _canvases(page) -> list[str]:
    return page.eval_on_selector_all("#samples canvas", "cs => cs.map(c => c.toDataURL())")


def test_the_page_samples_one_class_and_interpolates(browser, art_dir, tmp_path):
    from tests.runtime.live import start_serve

    proc, url = start_serve(art_dir)
    try:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/", wait_until="networkidle")
        later: list[str] = []
        page.on("request", lambda r: later.append(r.url))
        page.wait_for_timeout(1500)
        assert later == []  # an open page that nobody uses sends nothing: no polling
        page.click("#sample")
        page.wait_for_function("document.querySelectorAll('#samples canvas').length === 16")
        first = _canvases(page)
        page.fill("#seed", "7")
        page.click("#sample")
        page.wait_for_function("document.getElementById('status').textContent === 'sampling: done'")
        assert _canvases(page) != first and len(_canvases(page)) == 16
        page.wait_for_function("document.querySelectorAll('#class option').length > 2")
        page.select_option("#class", "3")
        page.click("#sample")
        page.wait_for_function("document.getElementById('status').textContent === 'sampling: done'")
        page.click("#interpolate")
        page.wait_for_function("document.querySelectorAll('#strip canvas').length === 8")
        from PIL import Image

        Image.new("L", (16, 16), 200).save(tmp_path / "upload.png")
        page.set_input_files("#upload", str(tmp_path / "upload.png"))
        page.wait_for_function(
            "(() => { const i = document.getElementById('reconstruction');"
            " return !i.hidden && i.complete && i.naturalWidth > 0; })()"
        )
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        assert not errors, errors
    finally:
        proc.kill()
        proc.wait()


def test_the_page_asks_for_the_token(browser, art_dir):
    from tests.runtime.live import start_serve

    proc, url = start_serve(art_dir, "--token", TOKEN)
    try:
        page = browser.new_page()
        page.goto(url + "/")
        page.click("#sample")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('401')")
        assert "needs a token" in page.text_content("#status")
        page.fill("#token", TOKEN)
        page.dispatch_event("#token", "change")
        page.click("#sample")
        page.wait_for_function("document.querySelectorAll('#samples canvas').length === 16")
    finally:
        proc.kill()
        proc.wait()

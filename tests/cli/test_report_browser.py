"""The report in a real browser: headless Chromium (Debian's, driven by Playwright) opens it with no
console error and every image loaded; a page with one broken image fails the same check."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import run_cli

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (the dev extra has it)"
)
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium here: `make setup` installs Debian's package where it can (as root)"
)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


def open_page(url: str, screenshot=None) -> tuple[int, int, list[str]]:
    """(images on the page, images that did not load, console errors) in headless Chromium."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url, wait_until="load")
            total = page.evaluate("document.images.length")
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length"
            )
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return total, broken, errors


def test_the_report_opens_with_every_image_and_no_error(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert run_cli("report", str(run)).returncode == 0
    total, broken, errors = open_page((run / "report.html").as_uri(), tmp_path / "report.png")
    assert total > 3 and broken == 0 and not errors, (total, broken, errors)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    # the check can fail: the same page with one image's bytes damaged
    page = (run / "report.html").read_text()
    damaged = re.sub(
        r'(src="data:image/png;base64,)[^"]{40}', r"\1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", page, count=1
    )
    (tmp_path / "damaged.html").write_text(damaged)
    total2, broken2, _ = open_page((tmp_path / "damaged.html").as_uri())
    assert total2 == total and broken2 == 1

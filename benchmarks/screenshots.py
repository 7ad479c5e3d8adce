"""The screenshots in README.md and docs/: `vaegan report` of a run and of its export, and the page `vaegan serve` answers
at /, taken in headless Chromium (Debian's, through Playwright) as the browser tests drive them.

    python benchmarks/screenshots.py RUN_DIR ART_DIR     # e.g. runs/digits artifacts/digits (make quickstart)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.runtime.live import start_serve  # noqa: E402
from tests.runtime.test_ui_browser import FLAGS  # noqa: E402
from vaegan.report import write_report  # noqa: E402


def main(run: Path, art: Path, docs: Path = ROOT / "docs") -> None:
    report = write_report(run)
    art_report = write_report(art, Path(run) / "artifacts_report.html")
    proc, url = start_serve(art)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            page = browser.new_page(viewport={"width": 1150, "height": 900})
            page.goto(report.resolve().as_uri())
            page.screenshot(path=str(docs / "report.png"), full_page=False)
            page.goto(art_report.resolve().as_uri())
            page.screenshot(path=str(docs / "report_artifacts.png"), full_page=True)
            page.goto(url + "/")
            page.click("#sample")
            page.wait_for_function("document.querySelectorAll('#samples canvas').length === 16")
            page.click("#interpolate")
            page.wait_for_function("document.querySelectorAll('#strip canvas').length === 8")
            page.screenshot(path=str(docs / "serve_page.png"), full_page=True)
            browser.close()
    finally:
        proc.kill()
        proc.wait()
    print(f"-> {docs / 'report.png'}, {docs / 'report_artifacts.png'}, {docs / 'serve_page.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

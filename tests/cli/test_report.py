"""`vaegan report`: a self-contained page of a run and of an export, every image embedded and
decodable, nothing fetched at view time, and the discriminator's state said in words."""

from __future__ import annotations

import base64
import io
import re
import shutil

from PIL import Image

from tests.conftest import run_cli


def _images(page: str) -> list[Image.Image]:
    out = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()  # a broken image fails here
        out.append(img)
    return out


def test_report_of_a_run(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    r = run_cli("report", str(run))
    assert r.returncode == 0, r.stderr
    page = (run / "report.html").read_text()
    grids = len(list((run / "samples").glob("*.png")))
    assert len(_images(page)) == grids + 3  # every grid, and the loss, D and images/s plots
    assert 'id="d-verdict"' in page and "discriminator is" in page
    assert not re.search(r"(src|href)=\"https?://", page)  # opens offline


def test_report_of_an_export(art_dir, tmp_path):
    r = run_cli("report", str(art_dir), "--out", str(tmp_path / "art.html"))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "art.html").read_text()
    assert len(_images(page)) == 3  # fp32, fp16 and int8 grids from the same latents
    assert "decoder.int8.onnx" in page and "Quality per precision" in page


def test_report_of_something_else_is_one_line(tmp_path):
    r = run_cli("report", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "neither a run dir" in r.stderr

"""High-bit-depth and transparent images are read as a person sees them, in `vaegan sample
--reconstruct` and in POST /v1/reconstruct alike (one function, core.images.to_8bit)."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vaegan.core.images import fit_image


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def _ramp16() -> np.ndarray:
    return np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)


def test_a_16_bit_png_is_scaled_not_clipped():
    img = Image.open(io.BytesIO(_png(_ramp16())))
    assert img.mode.startswith("I")
    got = fit_image(img, 16, 1)[..., 0].astype(int)
    assert np.abs(got - (_ramp16() / 257).round()).max() == 0  # Pillow's convert("L") was 126 off on average


def test_a_digit_drawn_only_in_alpha_is_read_as_that_mask():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[3:13, 7:9, 3] = 255  # black strokes, visible only through alpha
    got = fit_image(Image.open(io.BytesIO(_png(rgba, "RGBA"))), 16, 1)[..., 0]
    assert got[5, 7] == 255 and got[0, 0] == 0


def test_colour_with_alpha_is_composited_over_black():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:8, :, 3] = 255  # top half opaque red, bottom half transparent red
    got = fit_image(Image.open(io.BytesIO(_png(rgba, "RGBA"))), 16, 3)
    assert got[2, 2, 0] == 200 and got[12, 2, 0] == 0


def test_cli_reconstruct_reads_16_bit_files_as_their_8_bit_selves(art_dir, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a16.png").write_bytes(_png(_ramp16()))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaegan",
            "sample",
            str(art_dir),
            "--reconstruct",
            str(d),
            "--out",
            str(tmp_path / "r.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "r.npz") as z:
        original = z["images"][0, ..., 0].astype(int)
    assert np.abs(original - (_ramp16() / 257).round()).max() == 0


def test_server_reconstructs_a_16_bit_png_like_its_8_bit_copy(art_dir):
    pytest.importorskip("starlette")
    httpx = pytest.importorskip("httpx")
    from tests.runtime.live import LiveServer
    from vaegan.runtime import Sampler
    from vaegan.runtime.server import create_app

    eight = (_ramp16() / 257).round().astype(np.uint8)
    with Sampler.load(art_dir, backend="ort") as s, LiveServer(create_app(s)) as url:
        a = httpx.post(
            f"{url}/v1/reconstruct", content=_png(_ramp16()), headers={"content-type": "image/png"}
        )
        b = httpx.post(f"{url}/v1/reconstruct", content=_png(eight), headers={"content-type": "image/png"})
    assert a.status_code == b.status_code == 200
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(a.content))), np.asarray(Image.open(io.BytesIO(b.content)))
    )


def test_npz_images_are_read_by_key_and_bad_files_are_named(tmp_path):
    from vaegan.core.errors import DataError
    from vaegan.core.images import read_npz_images

    x = np.zeros((2, 4, 4, 1), np.uint8)
    np.savez(tmp_path / "a.npz", x=x)
    assert read_npz_images(tmp_path / "a.npz", ("images", "x")).shape == (2, 4, 4, 1)
    with pytest.raises(DataError, match="neither 'images' nor 'x'"):
        np.savez(tmp_path / "b.npz", other=x)
        read_npz_images(tmp_path / "b.npz", ("images", "x"))
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        read_npz_images(tmp_path / "c.npz", ("x",))

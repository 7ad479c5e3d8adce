import numpy as np
import pytest
from PIL import Image

from vaegan.core.errors import DataError
from vaegan.trainer.data import load_dataset


def test_digits_is_offline_and_labelled():
    d = load_dataset("digits", 16)
    assert d.images.shape == (1797, 16, 16, 1) and d.images.dtype == np.uint8
    assert d.labels is not None and set(d.labels.tolist()) == set(range(10))
    assert d.images.max() > 200  # scaled from 0..16 to the full uint8 range


def _write_folder(root, n=6, size=40, rgb=True):
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (root / label / "deeper").mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 255, (size, size + 8, 3 if rgb else 1), dtype=np.uint8)
            img = Image.fromarray(a if rgb else a[..., 0])
            sub = root / label / ("deeper" if i % 2 else "")
            img.save(sub / f"{i}.{'png' if i % 3 else 'jpg'}")


def test_image_folder_recursive_labels_and_corrupt_files_skipped(tmp_path, caplog):
    _write_folder(tmp_path)
    (tmp_path / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    d = load_dataset(str(tmp_path), 32)
    assert d.images.shape == (12, 32, 32, 3)
    assert d.class_names == ["cats", "dogs"]
    assert sorted(np.bincount(d.labels).tolist()) == [6, 6]
    assert any("broken.png" in s for s in d.skipped) and any("notes.txt" in s for s in d.skipped)
    assert "broken.png" in caplog.text


def test_grey_folder_infers_one_channel(tmp_path):
    _write_folder(tmp_path, rgb=False)
    assert load_dataset(str(tmp_path), 16).images.shape[-1] == 1


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="holds no files"):
        load_dataset(str(tmp_path), 32)


def test_folder_of_only_broken_files_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="no readable images"):
        load_dataset(str(tmp_path), 32)


def test_npz_with_and_without_labels(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (20, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.array([3, 7] * 10))
    d = load_dataset(str(tmp_path / "a.npz"), 16)
    assert d.images.shape == (20, 16, 16, 1) and d.class_names == ["3", "7"]
    np.savez(tmp_path / "b.npz", x=np.repeat(x[..., None], 3, -1))
    d = load_dataset(str(tmp_path / "b.npz"), 16)
    assert d.images.shape == (20, 16, 16, 3) and d.labels is None


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"images": np.zeros((2, 8, 8), np.uint8)}, "no array 'x'"),
        ({"x": np.zeros((2, 8, 8), np.float32)}, "must be uint8"),
        ({"x": np.zeros((2, 8, 8, 5), np.uint8)}, r"\[N,H,W\]"),
        ({"x": np.zeros((2, 8, 8), np.uint8), "y": np.zeros(3)}, "one label per image"),
    ],
)
def test_bad_npz(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_dataset(str(tmp_path / "bad.npz"), 16)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet", 32)


def test_split_is_deterministic_and_disjoint():
    d = load_dataset("digits", 16)
    a_train, a_val = d.split(0.1, seed=3)
    b_train, b_val = d.split(0.1, seed=3)
    c_train, _ = d.split(0.1, seed=4)
    assert np.array_equal(a_val.images, b_val.images)
    assert not np.array_equal(a_train.images[:50], c_train.images[:50])
    assert len(a_train.images) + len(a_val.images) == 1797


@pytest.mark.reliability("round3", "a PNG whose header claims 20000x20000 in a training folder")
def test_a_decompression_bomb_is_skipped_with_one_line(tmp_path):
    import struct
    import zlib

    from tests.conftest import TINY, run_cli

    folder = tmp_path / "data"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(24):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / label / f"{i}.png")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def header_only_png(side: int) -> bytes:  # a grey PNG of side x side: a few bytes on disk
        ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b"")
        )

    (folder / "a" / "bomb.png").write_bytes(header_only_png(20000))  # Pillow's own limit refuses it
    (folder / "a" / "big.png").write_bytes(header_only_png(5000))  # under Pillow's, over vaegan's
    r = run_cli(
        "train", "--data", str(folder), *TINY, "--max-steps", "2", "--quiet", "--out", str(tmp_path / "run")
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "DecompressionBomb" not in r.stderr
    skipped = sorted((tmp_path / "run" / "skipped_files.txt").read_text().splitlines())
    assert len(skipped) == 2, skipped
    assert "big.png: 5000x5000 is over 16 megapixels" in skipped[0]
    assert "bomb.png: its header claims over 16 megapixels" in skipped[1]

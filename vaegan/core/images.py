"""uint8 NHWC image helpers: grids, PNG files, loading user images. numpy + Pillow only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from vaegan.core.io import atomic_write

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
# uint8 pixels p map to the networks' range [-1, 1] as p / PIXEL_SCALE - 1 (trainer.data.pixels_to_unit)
PIXEL_SCALE = 127.5


def grid(images: np.ndarray, cols: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tile uint8 [N,H,W,C] into one uint8 [H',W',C] picture, `scale` times larger (nearest)."""
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = (
            img
        )
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out


def to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write one uint8 [H,W,C] image atomically."""
    with atomic_write(path, "wb") as f:
        to_pil(image).save(f, format="PNG")


def save_grid(path: str | Path, images: np.ndarray, cols: int | None = None, scale: int = 0) -> None:
    """A grid PNG; small images are scaled up so a person can see them (at least ~256 px wide)."""
    if scale <= 0:
        scale = max(1, 256 // (images.shape[2] * (cols or math.ceil(math.sqrt(len(images))))) or 1)
        scale = min(scale, 8)
    save_png(path, grid(images, cols=cols, scale=scale))


def fit_image(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """A PIL image -> uint8 [size,size,C]: colour mode, centre crop to a square, resize."""
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    if w != h:
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if img.size[0] != size:
        up = size > img.size[0]
        img = img.resize((size, size), Image.Resampling.BICUBIC if up else Image.Resampling.LANCZOS)
    a = np.asarray(img, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def load_image(path: str | Path, size: int, channels: int) -> np.ndarray:
    """A user's image file -> uint8 [size,size,C] at the model's size."""
    img = Image.open(path)
    img.load()
    return fit_image(img, size, channels)

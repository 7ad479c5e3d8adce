"""uint8 NHWC image helpers: grids, PNG files, loading user images. numpy + Pillow only."""

from __future__ import annotations

import math
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from vaegan.core.errors import DataError
from vaegan.core.io import atomic_write

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def read_npz_images(path: str | Path, keys: tuple[str, ...]) -> np.ndarray:
    """The first of `keys` in an .npz (uint8 NHWC images by convention; the caller checks the shape).
    DataError, naming the file, when it cannot be read or has none of them."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            for key in keys:
                if key in z:
                    return np.asarray(z[key])
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz ({type(e).__name__}: {e})") from None
    names = " nor ".join(repr(k) for k in keys)
    raise DataError(
        f"{path} has {'neither ' if len(keys) > 1 else 'no array '}{names} (uint8 images [N,H,W,C])"
    )


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


def to_8bit(img: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit "L" or "RGB", scaled rather than clipped, with alpha decided.

    High bit depth: 16-bit grey ("I;16*", or "I" holding values above 255) is scaled by 255/65535,
    32-bit float ("F") by 255 when it lies in [0, 1]; Pillow's own conversion clips them instead,
    which turns a 16-bit PNG into black and white. (Pillow already reads 16-bit RGB PNGs as 8-bit.)

    Alpha is coverage: a transparent pixel is background, and vaegan composites over black, the
    background of the bundled digits. An image whose colour is one flat colour carries its content
    only in the alpha channel (a mask, as drawing tools export strokes): it is read as that mask,
    opaque = bright.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            scale = 255.0 if a.size and np.nanmax(a) <= 1.0 else 1.0
        else:
            scale = 255.0 / 65535.0 if img.mode.startswith("I;16") or (a.size and a.max() > 255) else 1.0
        return Image.fromarray(np.clip(np.nan_to_num(a * scale).round(), 0, 255).astype(np.uint8), "L")
    if img.mode in ("LA", "La", "RGBA", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
        colour, alpha = rgba[..., :3], rgba[..., 3:] / 255.0
        if np.ptp(colour) == 0 and np.ptp(alpha) > 0:  # the content is the alpha channel: a mask
            return Image.fromarray((alpha[..., 0] * 255).round().astype(np.uint8), "L")
        return Image.fromarray((colour * alpha).round().astype(np.uint8), "RGB")
    return img if img.mode in ("L", "RGB") else img.convert("RGB")


def fit_image(img: Image.Image, size: int | tuple[int, int], channels: int) -> np.ndarray:
    """A PIL image -> uint8 [H, W, C]: 8-bit (to_8bit; C=4 keeps its alpha as is), colour mode,
    centre crop to the target's aspect, resize. `size` is H = W, or (H, W)."""
    h, w = (size, size) if isinstance(size, int) else size
    if channels == 4:
        img = img.convert("RGBA")
    else:
        img = to_8bit(img).convert("L" if channels == 1 else "RGB")
    iw, ih = img.size
    if iw * h != ih * w:  # crop to the target's aspect ratio, centred
        cw, ch = (iw, iw * h // w) if iw * h < ih * w else (ih * w // h, ih)
        img = img.crop(((iw - cw) // 2, (ih - ch) // 2, (iw - cw) // 2 + cw, (ih - ch) // 2 + ch))
    if img.size != (w, h):
        up = w > img.size[0]
        img = img.resize((w, h), Image.Resampling.BICUBIC if up else Image.Resampling.LANCZOS)
    a = np.asarray(img, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


MAX_PIXELS = 16_000_000  # far above any training size (16..128): a larger image is a mistake or a bomb


def open_image(src: str | Path | IO[bytes], name: str | None = None) -> Image.Image:
    """A PNG/JPEG/BMP, decoded; DataError naming it when it is not one, or when its header claims
    more than MAX_PIXELS (checked before any pixel is decoded: a 20000x20000 header is a few bytes)."""
    from PIL import UnidentifiedImageError

    name = name or str(src)
    try:
        img = Image.open(src)
        if img.width * img.height > MAX_PIXELS:
            raise DataError(
                f"{name}: {img.width}x{img.height} is over {MAX_PIXELS // 1_000_000} megapixels; resize it"
            )
        img.load()
    except Image.DecompressionBombError:  # Pillow's own limit, hit at open for the largest headers
        raise DataError(
            f"{name}: its header claims over {MAX_PIXELS // 1_000_000} megapixels; resize it"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{name}: unreadable ({type(e).__name__}: {e})") from None
    return img


def load_image(path: str | Path, size: int | tuple[int, int], channels: int) -> np.ndarray:
    """A user's image file -> uint8 [size,size,C] at the model's size."""
    return fit_image(open_image(path), size, channels)

"""Datasets: scikit-learn's bundled digits (offline default), an image folder, or an .npz.

Everything is loaded once into a uint8 NHWC array at the model's image size; batches are cut from a
float tensor in [-1, 1]. Small generative datasets fit in memory, and this keeps the loop free of
DataLoader worker processes on 2-core machines.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vaegan.core.errors import ConfigError, DataError
from vaegan.core.images import IMAGE_SUFFIXES, fit_image, open_image

log = logging.getLogger(__name__)

UNEVEN = 2.0  # largest class over smallest above which a labelled data set is uneven


@dataclass
class Dataset:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray | None  # int64 [N] or None
    class_names: list[str] = field(default_factory=list)
    source: str = ""
    skipped: list[str] = field(default_factory=list)  # files that could not be read

    @property
    def key(self) -> str:
        """Content hash: the same pixels and labels give the same key, wherever the files live."""
        h = hashlib.sha256()
        h.update(str(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        if self.labels is not None:
            h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()[:16]

    def split(self, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """Deterministic train/val split from the seed."""
        n = len(self.images)
        perm = np.random.default_rng(seed).permutation(n)
        n_val = max(1, int(round(n * val_fraction)))
        val, train = perm[:n_val], perm[n_val:]
        return self.take(train), self.take(val)

    def take(self, idx: np.ndarray) -> Dataset:
        """The images (and labels) at idx: indices or a boolean mask."""
        labels = None if self.labels is None else self.labels[idx]
        return Dataset(self.images[idx], labels, self.class_names, self.source)


def class_spread(labels: np.ndarray | None) -> float:
    """Images in the largest class over the smallest: 1.0 for unlabelled or even data."""
    if labels is None:
        return 1.0
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return float(counts.max() / counts.min())


def uneven_balance(spread: float) -> float:
    """The class draw (draw_weights' balance) for a data set whose largest class holds `spread` times
    the images of its smallest: 0.5 where the classes are uneven, 0 (every image equally often)
    otherwise. The trainer's recipe and the evaluation classifier both draw by it."""
    return 0.5 if spread > UNEVEN else 0.0


def draw_weights(labels: np.ndarray | None, balance: float) -> np.ndarray | None:
    """Per-image weights that draw each class at its share of the images to the power `balance`
    (0: every image equally often, None; 1: every class equally often)."""
    if labels is None or balance <= 0:
        return None
    counts = np.bincount(labels).astype(np.float64)
    return counts[labels] ** (balance - 1.0)


def class_draw_shares(labels: np.ndarray, balance: float) -> np.ndarray:
    """Each class's share of the images drawn for training under `balance` (draw_weights)."""
    counts = np.bincount(labels).astype(np.float64)
    shares = counts ** float(balance) * (counts > 0)
    return shares / shares.sum()


def epoch_order(n: int, seed: int, epoch: int, weights: np.ndarray | None = None):
    """The training images' order for one epoch, a function of (seed, epoch) alone so that a resumed
    run draws the batches the killed one would have: a permutation, or with weights n draws with
    replacement, each image in proportion to its weight."""
    import torch

    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    if weights is None:
        return torch.randperm(n, generator=g)
    return torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), n, True, generator=g)


def _resize_array(x: np.ndarray, size: int, channels: int) -> np.ndarray:
    if x.shape[1] == size and x.shape[2] == size and x.shape[3] == channels:
        return np.ascontiguousarray(x)
    mode = "L" if x.shape[3] == 1 else "RGB"
    return np.stack(
        [fit_image(Image.fromarray(a.squeeze(-1) if mode == "L" else a, mode), size, channels) for a in x]
    )


def load_digits_dataset(size: int, channels: int = 1) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(d.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)[..., None]
    return Dataset(
        _resize_array(x, size, channels), d.target.astype(np.int64), [str(i) for i in range(10)], "digits"
    )


def load_image_folder(root: Path, size: int | tuple[int, int] | None, channels: int | None) -> Dataset:
    """Recursive; the first path component under root is the label. Unreadable files are skipped."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"{root} holds no files: put images in it (subfolders become labels)")
    rel_parts = [p.relative_to(root).parts for p in files]
    labelled = all(len(parts) > 1 for parts in rel_parts)
    class_names = sorted({parts[0] for parts in rel_parts}) if labelled else []
    opened: list[tuple[Image.Image, Path]] = []
    skipped: list[str] = []
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(f"{p}: not an image suffix ({', '.join(sorted(IMAGE_SUFFIXES))})")
            continue
        try:
            opened.append((open_image(p), p))
        except DataError as e:
            skipped.append(str(e))
    for s in skipped:
        log.warning("skipping %s", s)
    if not opened:
        raise DataError(
            f"{root} holds no readable images ({len(skipped)} files skipped): use PNG, JPEG or BMP"
        )
    sizes = {img.size for img, _ in opened}
    modes = {img.mode for img, _ in opened}
    if size is None:
        size = native_size(sizes, str(root))
    if channels is None:
        channels = 1 if all(m in ("L", "1", "I", "I;16", "LA") for m in modes) else 3
    if len(sizes) > 1 or len(modes) > 1:  # said once, not per file
        log.warning(
            "%s: %d images in %d sizes and %d modes (%s); all centre-cropped and resized to %s, %s",
            root,
            len(opened),
            len(sizes),
            len(modes),
            ", ".join(sorted(modes)),
            f"{size}x{size}" if isinstance(size, int) else f"{size[0]}x{size[1]}",
            {1: "grey", 3: "RGB", 4: "RGBA"}[channels],
        )
    images = np.stack([fit_image(img, size, channels) for img, _ in opened])
    labels = None
    if labelled:
        index = {name: i for i, name in enumerate(class_names)}
        labels = np.array([index[p.relative_to(root).parts[0]] for _, p in opened], dtype=np.int64)
    return Dataset(images, labels, class_names, str(root), skipped)


def load_npz(path: Path, size: int | None, channels: int | None) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z:
                raise DataError(f"{path} has no array 'x': save uint8 images as np.savez(path, x=..., y=...)")
            x, y = z["x"], (z["y"] if "y" in z else None)
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable .npz ({e})") from e
    if x.dtype != np.uint8:
        raise DataError(f"{path}: 'x' must be uint8 (got {x.dtype}); scale to 0..255 first")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) == 0:
        raise DataError(f"{path}: 'x' must be [N,H,W] or [N,H,W,C] with C 1 or 3 and N > 0, got {x.shape}")
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise DataError(f"{path}: 'y' must be one label per image, got shape {y.shape} for {len(x)} images")
    if size is None:
        size = native_size({(x.shape[2], x.shape[1])}, str(path))
    channels = channels or x.shape[-1]
    if x.shape[-1] != channels:
        x = x.repeat(3, axis=-1) if channels == 3 else x.mean(-1, keepdims=True).round().astype(np.uint8)
    labels, names = None, []
    if y is not None:
        names_arr, labels = np.unique(y, return_inverse=True)
        names = [str(n) for n in names_arr]
        labels = labels.astype(np.int64)
    return Dataset(_resize_array(x, size, channels), labels, names, str(path))


def native_size(sizes: set[tuple[int, int]], source: str) -> int:
    """The image size to train at when none is given: the images' own, if they are all one square of
    a size the model takes; otherwise a one-line DataError that asks for --image-size."""
    from vaegan.config import ModelConfig

    if len(sizes) == 1:
        ((w, h),) = sizes
        if w == h:
            try:
                return ModelConfig(image_size=w).validate().image_size
            except ConfigError:
                pass
    shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4]) + (" ..." if len(sizes) > 4 else "")
    raise DataError(
        f"{source} holds {shown} images, not one square of a power of two from 16 to 128: pass --image-size "
        "to centre-crop and resize them to it"
    )


def load_dataset(spec: str, size: int | None, channels: int | None = None) -> Dataset:
    """`digits`, a directory of images, or an .npz file. size None: the images' own (native_size);
    digits, which are 8x8, are upscaled to the model's default size."""
    if spec == "digits":
        from vaegan.config import ModelConfig

        return load_digits_dataset(size or ModelConfig().image_size, channels or 1)
    path = Path(spec)
    if path.is_dir():
        return load_image_folder(path, size, channels)
    if path.suffix == ".npz" and path.is_file():
        return load_npz(path, size, channels)
    if path.exists():
        raise DataError(f"{spec} is neither a directory of images nor an .npz file")
    raise DataError(f"unknown dataset {spec!r}: use 'digits', an image folder or a .npz file that exists")


def pixels_to_unit(images, lo: float = -1.0, hi: float = 1.0):
    """uint8 NHWC -> float32 NCHW in [lo, hi] (torch). The one pixel mapping: training, evaluation and
    the exported encoder graph all use it. Cast first: TensorRT takes uint8 only into a Cast."""
    import torch

    scale = 255.0 / (hi - lo)  # 127.5 for vaegan's own [-1, 1]
    return images.to(torch.float32).permute(0, 3, 1, 2) / scale + lo


def unit_to_pixels(x, lo: float = -1.0, hi: float = 1.0):
    """float NCHW in [lo, hi] -> uint8 NHWC (torch): round, clamp, then cast last (TensorRT takes
    uint8 only from a Cast into a graph output). The exported decoder graph ends in exactly this."""
    import torch

    scale = 255.0 / (hi - lo)
    return ((x - lo) * scale).round().clamp(0.0, 255.0).permute(0, 2, 3, 1).to(torch.uint8)


def to_tensor_range(images: np.ndarray):
    """uint8 NHWC numpy -> float32 NCHW torch in [-1, 1]."""
    import torch

    return pixels_to_unit(torch.from_numpy(images)).contiguous()


def to_uint8(x) -> np.ndarray:
    """float NCHW in [-1, 1] (torch) -> uint8 NHWC numpy, rounding the way the exported graph does."""
    return unit_to_pixels(x.detach().float().clamp(-1, 1)).cpu().numpy()

"""Bring your own model: the checks that a user's PyTorch decoder (and encoder) do what export_model is
told they do, the calibration images they are measured on, and where the modules came from. Each
failure is one ExportError or ConfigError that says what the model did on what input."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaegan.core.errors import ConfigError, ExportError
from vaegan.trainer.data import pixels_to_unit


def check_shape(latent_dim: Any, image_shape: Any, output_range: Any) -> tuple[int, int, int]:
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or not 1 <= latent_dim <= 4096:
        raise ConfigError(f"latent_dim must be an integer in 1..4096, got {latent_dim!r}")
    try:
        h, w, c = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"image_shape must be (H, W, C), got {image_shape!r}") from None
    if not (4 <= h <= 4096 and 4 <= w <= 4096) or c not in (1, 3, 4):
        raise ConfigError(
            f"image_shape must be (H, W, C) with H, W in 4..4096 and C 1, 3 or 4, got {image_shape!r}"
        )
    try:
        lo, hi = (float(v) for v in output_range)
    except (TypeError, ValueError):
        raise ConfigError(f"output_range must be (low, high), got {output_range!r}") from None
    if not lo < hi:
        raise ConfigError(f"output_range must be (low, high) with low < high, got {output_range!r}")
    return h, w, c


def calibration_data(calibration: Any, shape: tuple[int, int, int]) -> Any:
    """A Dataset of real images at the model's shape (labels when a folder has subfolders), or None."""
    from vaegan.trainer.data import Dataset, load_image_folder

    if calibration is None:
        return None
    h, w, c = shape
    if isinstance(calibration, str | Path):
        if not Path(calibration).is_dir():
            raise ConfigError(f"calibration {calibration} is not a folder of images")
        data = load_image_folder(Path(calibration), size=(h, w), channels=c)
        return data
    x = np.asarray(calibration)
    if x.ndim == 3 and c == 1:
        x = x[..., None]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != shape or len(x) < 16:
        raise ConfigError(
            f"calibration must be at least 16 real images, uint8 [N, {h}, {w}, {c}], got {x.dtype} {list(x.shape)}"
        )
    return Dataset(x, None, [], "calibration images")


def check_modules(
    decoder: nn.Module,
    encoder: nn.Module | None,
    latent_dim: int,
    shape: tuple[int, int, int],
    output_range: tuple[float, float],
    images: np.ndarray | None,
) -> None:
    """The modules do what export_model is told they do, else one clear ExportError."""
    h, w, c = shape
    lo, hi = output_range
    if not isinstance(decoder, nn.Module) or (encoder is not None and not isinstance(encoder, nn.Module)):
        raise ExportError("decoder (and encoder, when given) must be torch.nn.Module instances")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, latent_dim, generator=g)
    with torch.no_grad():
        try:
            x = decoder.eval()(z)
        except Exception as e:  # noqa: BLE001 - the user's code: say what it did on what input
            raise ExportError(f"the decoder failed on z [64, {latent_dim}]: {type(e).__name__}: {e}") from e
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (64, c, h, w):
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ExportError(
                f"the decoder returns {got} for z [64, {latent_dim}]; image_shape {shape} (H, W, C) needs "
                f"[64, {c}, {h}, {w}]"
            )
        bad = float((~torch.isfinite(x)).float().mean())
        if bad > 0:
            raise ExportError(
                f"the decoder returns NaN or inf for {bad:.2%} of its outputs on z [64, {latent_dim}] "
                "(precision fp32, in torch): check its weights"
            )
        margin = 0.05 * (hi - lo)
        outside = float(((x < lo - margin) | (x > hi + margin)).float().mean())
        if outside > 0.01:
            raise ExportError(
                f"{outside:.0%} of the decoder's outputs on prior latents lie outside output_range ({lo:g}, {hi:g}) "
                f"(min {float(x.min()):.3g}, max {float(x.max()):.3g}): pass the range it returns, e.g. (0, 1) for "
                "a sigmoid, (-1, 1) for tanh"
            )
        if encoder is None:
            return
        real = (
            torch.from_numpy(images[:8])
            if images is not None
            else torch.randint(0, 256, (8, h, w, c), dtype=torch.uint8)
        )
        try:
            got = encoder.eval()(pixels_to_unit(real, lo, hi))
        except Exception as e:  # noqa: BLE001
            raise ExportError(
                f"the encoder failed on images [8, {c}, {h}, {w}]: {type(e).__name__}: {e}"
            ) from e
        if not (
            isinstance(got, tuple | list)
            and len(got) == 2
            and all(isinstance(t, torch.Tensor) and tuple(t.shape) == (8, latent_dim) for t in got)
        ):
            desc = (
                [list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in got]
                if isinstance(got, tuple | list)
                else type(got).__name__
            )
            raise ExportError(
                f"the encoder must return (mu, logvar), two [B, {latent_dim}] tensors; it returned {desc}"
            )


def describe(module: nn.Module) -> dict[str, str]:
    """Where a user's module came from: its class and a hash of its state dict (not a training run)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    cls = type(module)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "state_sha256": h.hexdigest()}

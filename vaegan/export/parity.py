"""Parity of an exported file against its reference, measured through the runtime's own runners:
grey levels for a decoder's images, absolute error for an encoder's mu."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaegan.core.contract import Parity
from vaegan.core.manifest import Verified
from vaegan.runtime.backends import Runner, load_runner

EVAL_CHUNK = 256  # rows per engine call


def ort_runner(path: Path, precision: str) -> Runner:
    """The runtime's ONNX Runtime runner on the CPU for a file vaegan just wrote: what `vaegan sample`
    runs (no manifest entry describes the file yet, so there is no declared I/O to expect)."""
    return load_runner("ort", Verified.unchecked(path), _Written(path.name, precision), "cpu", 0, expect=None)


@dataclass
class _Written:
    """What a runner reads of a file vaegan has just written: its name and precision."""

    path: str
    precision: str
    notes: dict[str, Any] = field(default_factory=dict)


def decode(runner: Runner, z: np.ndarray) -> np.ndarray:
    return np.concatenate([runner.run(z[i : i + EVAL_CHUNK])[0] for i in range(0, len(z), EVAL_CHUNK)])


def encode(runner: Runner, images: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [runner.run(images[i : i + EVAL_CHUNK])[0] for i in range(0, len(images), EVAL_CHUNK)]
    )


def measure(
    runner: Runner,
    comp: str,
    z_eval: np.ndarray,
    val: np.ndarray,
    ref_images: np.ndarray,
    ref_mu: np.ndarray | None,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """(parity against fp32, the decoder's images or None); closes the runner."""
    with runner:
        if comp == "decoder":
            images = decode(runner, z_eval)
            return compare_uint8(ref_images, images), images
        d = np.abs(encode(runner, val) - ref_mu)
        return Parity("fp32", "encoder", float(d.max()), float(d.mean())).to_dict(), None


def compare_uint8(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Two decoders' images of the same latents, in grey levels."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return Parity("fp32", "decoder", int(d.max()), float(d.mean())).to_dict()

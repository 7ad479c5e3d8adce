"""What every exported file of a component must be: its inputs and outputs in every format, and how
close it must come to its reference (the parity record each artifact carries)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def contract(
    component: str, latent_dim: int, image_shape: tuple[int, int, int]
) -> tuple[list[dict], list[dict]]:
    """The inputs and outputs every file of a component must have, in every format."""
    images = {"name": "images", "shape": ["batch", *image_shape], "dtype": "uint8"}
    z = ["batch", latent_dim]
    if component == "decoder":
        return [{"name": "z", "shape": z, "dtype": "float32"}], [images]
    return [images], [
        {"name": "mu", "shape": z, "dtype": "float32"},
        {"name": "logvar", "shape": z, "dtype": "float32"},
    ]


# How far an exported fp32 file may be from the torch model it came from before the export stops:
# beyond it the graph is wrong, not rounded. fp16 and int8 files are judged by the quality of their
# samples instead (ExportOptions.max_fd_increase); their parity against fp32 is reported only.
PARITY_LIMITS = {"decoder": 1.0, "encoder": 1e-2}
PARITY_UNITS = {"decoder": "grey levels", "encoder": "mu"}


@dataclass
class Parity:
    """An exported file against its reference (the torch model for fp32, the fp32 file otherwise):
    the largest and mean absolute difference, in grey levels for a decoder's images, in latent
    units for an encoder's mu."""

    vs: str  # "torch" | "fp32"
    component: str
    max_abs_error: float
    mean_abs_error: float | None = None
    per_batch: dict[str, float] | None = None  # batch size -> max error, for the torch comparison

    @property
    def within_limit(self) -> bool:
        return self.max_abs_error <= PARITY_LIMITS[self.component]

    def to_dict(self) -> dict[str, Any]:
        """What the manifest's artifact `parity` field holds."""
        d: dict[str, Any] = {"vs": self.vs, "max_abs_error": self.max_abs_error}
        if self.mean_abs_error is not None:
            d["mean_abs_error"] = self.mean_abs_error
        if self.per_batch is not None:
            d |= {"batches": [int(b) for b in self.per_batch], "per_batch": self.per_batch}
        return d | {"unit": PARITY_UNITS[self.component]}

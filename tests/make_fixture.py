"""Build the small artifact dir the torch-free runtime tests run on (a separate step, with torch).

    python tests/make_fixture.py build/fixture-artifacts

Trains a tiny digits model for a few steps, exports fp32/fp16/int8 ONNX, OpenVINO IR and a Triton
repository, and writes reference.npz: latents and the torch decoder's images for them, so the
runtime tests can compare every engine with torch without importing it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaegan.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from vaegan.core.io import atomic_write  # noqa: E402
from vaegan.export.pipeline import ExportOptions, export_run  # noqa: E402
from vaegan.trainer.checkpoint import load_model  # noqa: E402
from vaegan.trainer.data import to_uint8  # noqa: E402
from vaegan.trainer.loop import train  # noqa: E402


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cfg = RunConfig(
            ModelConfig(image_size=16, width=8, latent_dim=8),
            TrainConfig(max_steps=40, batch_size=32, checkpoint_every=40, prior="fitted"),
        )
        train(cfg, run, progress=False)
        export_run(
            run,
            out,
            ExportOptions(
                openvino=True,
                triton=True,
                max_batch=16,
                opt_batch=4,
                calib_samples=128,
                quality_n=200,
                force=True,
            ),
        )
        _, m = load_model(run)
        z = np.random.default_rng(0).standard_normal((40, 8), dtype=np.float32)
        with torch.no_grad():
            images = to_uint8(m.decoder(torch.from_numpy(z)))
        with atomic_write(out / "reference.npz") as f:
            np.savez(f, z=z, images=images)
    print(f"fixture artifacts -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/fixture-artifacts"))

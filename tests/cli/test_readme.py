"""The README's "Bring your own model" example runs as written."""

import os
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet(after: str) -> str:
    """The first Python block of the README after the heading or phrase `after`."""
    text = README.read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(after) :], re.S).group(1)


def _run(code: str, cwd: Path) -> dict:
    """Run a README snippet in `cwd` as a user would paste it; returns its variables."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)
    finally:
        os.chdir(here)
    return scope


def test_bring_your_own_model_example_runs(tmp_path):
    scope = _run(_snippet("## Bring your own model"), tmp_path)
    images = scope["images"]
    assert images.shape == (8, 48, 40, 3) and images.dtype == np.uint8
    assert {a.precision for a in scope["manifest"].artifacts} == {"fp32", "fp16", "int8"}
    assert (tmp_path / "artifacts" / "mine" / "manifest.json").exists()


def test_training_from_python_example_runs(tmp_path):
    """The README's training snippet on a small colour folder (its 15-minute budget cut to 4 steps):
    the run takes the images' own size and colour without being told."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / "my_images" / label).mkdir(parents=True)
        for i in range(24):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                tmp_path / "my_images" / label / f"{i}.png"
            )
    code = _snippet("Training from Python")
    assert "time_s=15 * 60" in code
    scope = _run(code.replace("time_s=15 * 60", "max_steps=4"), tmp_path)
    m = scope["result"].cfg.model
    assert (m.image_size, m.channels) == (16, 3) and scope["result"].step == 4
    assert (tmp_path / "runs" / "mine" / "model.safetensors").exists()

"""The README's "Bring your own model" example runs as written."""

import os
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[2] / "README.md"


def test_bring_your_own_model_example_runs(tmp_path):
    text = README.read_text()
    section = text[text.index("## Bring your own model") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)
    finally:
        os.chdir(cwd)
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
    text = README.read_text()
    section = text[text.index("Training from Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "time_s=15 * 60" in code
    code = code.replace("time_s=15 * 60", "max_steps=4")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)
    finally:
        os.chdir(cwd)
    m = scope["result"].cfg.model
    assert (m.image_size, m.channels) == (16, 3) and scope["result"].step == 4
    assert (tmp_path / "runs" / "mine" / "model.safetensors").exists()

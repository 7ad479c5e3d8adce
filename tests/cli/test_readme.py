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

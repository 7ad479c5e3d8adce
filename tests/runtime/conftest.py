"""Runtime tests run on an exported artifact dir (tests/make_fixture.py) and never import torch:
they also run in the Python 3.10 venv that stands in for a Jetson's Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def art_dir() -> Path:
    path = Path(os.environ.get("VAEGAN_FIXTURE", ROOT / "build" / "fixture-artifacts"))
    if not (path / "manifest.json").exists():
        if importlib_util_has("torch"):  # the dev venv can build it; the runtime venv cannot
            subprocess.run([sys.executable, str(ROOT / "tests" / "make_fixture.py"), str(path)], check=True)
        else:
            pytest.fail(f"no fixture artifacts at {path}: run `make fixture` first (needs the dev venv)")
    return path


def importlib_util_has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.fixture
def art_copy(art_dir, tmp_path) -> Path:
    """A private copy to corrupt."""
    dst = tmp_path / "art"
    shutil.copytree(art_dir, dst)
    return dst


@pytest.fixture(scope="session")
def sampler(art_dir):
    from vaegan.runtime import Sampler

    s = Sampler.load(art_dir, backend="ort")
    yield s
    s.close()

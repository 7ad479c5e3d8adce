"""Runtime tests run on an exported artifact dir (tests/make_fixture.py) and never import torch:
they also run in the Python 3.10 venv that stands in for a Jetson's Python."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sampler(art_dir):
    from vaegan.runtime import Sampler

    s = Sampler.load(art_dir, backend="ort")
    yield s
    s.close()

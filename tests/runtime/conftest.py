"""Runtime tests run on an exported artifact dir (tests/make_fixture.py) and never import torch:
they also run in the Python 3.10 venv that stands in for a Jetson's Python."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.fixture(scope="session")
def sampler(art_dir):
    from vaegan.runtime import Sampler

    s = Sampler.load(art_dir, backend="ort")
    yield s
    s.close()


# OpenVINO is in every x86 test venv; where it is not (emulated aarch64, whose CPU plugin crashes
# under qemu-user: docs/deploying.md), its cases skip and say so
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed here"
)
OPENVINO = pytest.param("openvino", marks=needs_openvino)

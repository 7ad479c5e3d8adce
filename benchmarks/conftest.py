"""pytest-benchmark suites (not part of the unit-test run):

    make bench        # = .venv/bin/python -m pytest benchmarks --benchmark-only

They run on the quick start's artifacts when present (artifacts/digits), else on the test fixture, and
on the 64x64 RGB model of `make bench-model-64` (artifacts/letters64) when it is there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", params=["32x32 grey", "64x64 RGB"])
def art_dir(request) -> Path:
    """Each suite runs on both model sizes: the quick start's digits (else the test fixture) and the
    64x64 RGB letters model `make bench-model-64` exports (skipped where it has not been built)."""
    if request.param == "64x64 RGB":
        candidates = [os.environ.get("VAEGAN_BENCH_ARTIFACTS_64"), ROOT / "artifacts" / "letters64"]
    else:
        candidates = [
            os.environ.get("VAEGAN_BENCH_ARTIFACTS"),
            ROOT / "artifacts" / "digits",
            ROOT / "build" / "fixture-artifacts",
        ]
    for p in candidates:
        if p and (Path(p) / "manifest.json").exists():
            return Path(p)
    pytest.skip(
        f"no {request.param} artifacts: run `make quickstart`, `make fixture` or `make bench-model-64`"
    )

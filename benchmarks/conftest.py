"""pytest-benchmark suites (not part of the unit-test run):

    make bench        # = .venv/bin/python -m pytest benchmarks --benchmark-only

They run on the quick start's artifacts when present (artifacts/digits), else on the test fixture.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def art_dir() -> Path:
    for p in (
        os.environ.get("VAEGAN_BENCH_ARTIFACTS"),
        ROOT / "artifacts" / "digits",
        ROOT / "build" / "fixture-artifacts",
    ):
        if p and (Path(p) / "manifest.json").exists():
            return Path(p)
    pytest.skip("no artifacts: run `make quickstart` or `make fixture` first")

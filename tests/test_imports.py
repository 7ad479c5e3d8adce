"""The package's import rules (pyproject.toml's import-linter contracts) hold: the layers, the two
serving front-ends apart, no torch under runtime, core or config. `make lint` runs the same check."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_every_import_contract_is_kept():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists() and shutil.which("lint-imports") is None:
        pytest.skip("import-linter is not installed here (pip install -e '.[dev]')")
    r = subprocess.run(
        [str(exe) if exe.exists() else "lint-imports", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert r.stdout.count(" KEPT") == 3 and "BROKEN" not in r.stdout

"""The cross-machine parity check `make test-arm64` runs on emulated aarch64, run here against
itself: it passes on the same machine and names the case when an expected output is moved."""

import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "arm64" / "parity.py"


def _parity(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_parity_passes_against_itself_and_names_a_perturbed_case(art_dir, tmp_path):
    ref = tmp_path / "ref.npz"
    assert _parity(art_dir, "--write", ref, "--backends", "ort").returncode == 0
    ok = _parity(art_dir, "--check", ref, "--backends", "ort")
    assert ok.returncode == 0, ok.stdout
    assert "ort-int8-decoder: max 0 grey levels" in ok.stdout and "FAIL" not in ok.stdout
    bad = _parity(art_dir, "--check", ref, "--backends", "ort", "--perturb", "int8-decoder")
    assert bad.returncode == 1
    assert (
        "FAIL ort-int8-decoder" in bad.stdout and "1 case(s) beyond tolerance: ort-int8-decoder" in bad.stdout
    )
    mu = _parity(art_dir, "--check", ref, "--backends", "ort", "--perturb", "fp32-encoder")
    assert mu.returncode == 1 and "FAIL ort-fp32-encoder" in mu.stdout

"""cuda-python on a machine with no NVIDIA driver, for real: what a Jetson or GPU box with a broken
driver install meets. The main venv has cuda-python 13.x (error codes), the Python 3.10 runtime venv
JetPack 6's 12.6 (it raises RuntimeError instead); both must end in one clear line."""

import importlib.util
import subprocess
import sys

import pytest

from vaegan.core.errors import BackendUnavailable

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("cuda") is None, reason="cuda-python is not installed (the dev venvs have it)"
)


@pytest.fixture(scope="module")
def no_driver():
    from vaegan.runtime.backends.tensorrt import cuda_versions

    v = cuda_versions()
    if v["driver"] != "none":
        pytest.skip(
            f"an NVIDIA driver is present here (CUDA {v['driver']}): these tests are for machines without"
        )
    return v


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "vaegan", *args], capture_output=True, text=True, timeout=300
    )


def test_cuda_versions_name_the_runtime_and_flag_the_missing_driver(no_driver):
    import importlib.metadata

    major = importlib.metadata.version("cuda-python").split(".")[0]
    assert no_driver["runtime"].split(".")[0] == major
    assert no_driver["mismatch"].startswith("no NVIDIA driver found")


def test_gpu_query_without_a_driver_is_backend_unavailable(no_driver):
    from vaegan.runtime.backends.tensorrt import gpu_tag

    with pytest.raises(BackendUnavailable, match="no NVIDIA driver here"):
        gpu_tag()


def test_doctor_reports_the_missing_driver_without_a_traceback(no_driver, art_dir):
    r = _cli("doctor", str(art_dir))
    assert r.returncode == 0, r.stdout + r.stderr  # the CPU artifacts still run
    assert "Traceback" not in r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if "cuda versions" in x)
    assert f"runtime {no_driver['runtime']}" in line and "driver none" in line
    assert "no NVIDIA driver" in r.stdout


def test_engines_ends_in_one_line_with_exit_2(no_driver, art_dir):
    r = _cli("engines", str(art_dir))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "no NVIDIA driver here" in r.stderr

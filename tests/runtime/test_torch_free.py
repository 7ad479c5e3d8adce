import subprocess
import sys


def test_runtime_never_imports_torch():
    code = (
        "import sys, numpy as np\n"
        "from vaegan.runtime import Sampler, MicroBatcher\n"
        "import vaegan.runtime.sampler, vaegan.runtime.batcher, vaegan.core.images, vaegan.cli\n"
        "import vaegan.runtime.backends.ort, vaegan.runtime.backends.openvino, vaegan.runtime.backends.tensorrt\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cli_sample_works_without_importing_torch(art_dir, tmp_path):
    code = (
        "import sys, runpy\n"
        "sys.argv = ['vaegan', 'sample', sys.argv[1], '-n', '5', '--seed', '1', '--out', sys.argv[2]]\n"
        "from vaegan.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    out = tmp_path / "s.npz"
    r = subprocess.run([sys.executable, "-c", code, str(art_dir), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import numpy as np

    with np.load(out) as z:
        assert z["images"].shape[0] == 5 and z["images"].dtype == np.uint8 and z["z"].shape == (5, 8)

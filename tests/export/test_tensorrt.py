"""TensorRT for real, where TensorRT and an NVIDIA GPU exist; skipped with the reason elsewhere."""

import shutil

import numpy as np
import pytest

from vaegan.core.errors import BackendUnavailable


def _require_trt():
    try:
        from vaegan.export.tensorrt import require_tensorrt

        require_tensorrt()
    except (BackendUnavailable, ImportError) as e:
        pytest.skip(f"needs TensorRT 10/11 and an NVIDIA GPU: {e}")


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engines_build_load_and_match_onnx_runtime(art_dir, tmp_path, precision):
    _require_trt()
    from vaegan.core.manifest import Manifest
    from vaegan.export.tensorrt import build_engines
    from vaegan.runtime import Sampler

    art = tmp_path / "art"
    shutil.copytree(art_dir, art)
    m = build_engines(art, Manifest.load(art), opt_batch=4, max_batch=16)
    engine = m.find("decoder", precision, "tensorrt")
    assert engine and engine.notes["engine"]["tensorrt"] and engine.notes["engine"]["compute_capability"]
    with (
        Sampler.load(art, backend="tensorrt", precision=precision) as trt,
        Sampler.load(art, backend="ort", precision=precision) as ort,
    ):
        assert trt.backend_info["backend"] == "tensorrt"
        a, b = trt.sample(37, seed=0), ort.sample(37, seed=0)  # 37 > max batch: chunked
        limit = 1 if precision == "fp32" else 8
        assert np.abs(a.astype(int) - b.astype(int)).max() <= limit
        mu_t, _ = trt.encode(a)
        mu_o, _ = ort.encode(a)
        assert np.abs(mu_t - mu_o).max() < (1e-2 if precision == "fp32" else 0.5)

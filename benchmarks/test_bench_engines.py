"""Decoder and encoder latency per backend, precision and batch; runtime overhead vs a raw session."""

from __future__ import annotations

import numpy as np
import pytest

from vaegan.core.manifest import Manifest

BATCHES = [1, 8, 64]


def _sampler(art_dir, backend, precision):
    from vaegan.core.errors import BackendUnavailable
    from vaegan.runtime import Sampler

    try:
        return Sampler.load(art_dir, backend=backend, precision=precision)
    except BackendUnavailable as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_decoder(benchmark, art_dir, backend, precision, batch):
    s = _sampler(art_dir, backend, precision)
    z = s.latents(batch, seed=0)
    benchmark.group = f"decoder b{batch}"
    out = benchmark(s.decode, z)
    assert out.shape[0] == batch


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_encoder(benchmark, art_dir, precision, batch):
    s = _sampler(art_dir, "ort", precision)
    x = s.sample(batch, seed=0)
    benchmark.group = f"encoder b{batch}"
    mu, _ = benchmark(s.encode, x)
    assert mu.shape == (batch, s.latent_dim)


@pytest.mark.parametrize("batch", [1, 64])
def test_raw_session_decoder(benchmark, art_dir, batch):
    """The peer for runtime overhead: a plain InferenceSession on the same file."""
    import onnxruntime as ort

    m = Manifest.load(art_dir)
    sess = ort.InferenceSession(
        str(art_dir / m.find("decoder", "fp32", "onnx").path), providers=["CPUExecutionProvider"]
    )
    z = np.random.default_rng(0).standard_normal((batch, m.latent_dim), dtype=np.float32)
    benchmark.group = f"decoder b{batch}"
    benchmark(sess.run, None, {"z": z})

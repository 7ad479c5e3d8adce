import json

import numpy as np
import pytest

from tests.runtime.conftest import OPENVINO, needs_openvino
from vaegan.core.errors import ArtifactError, BackendUnavailable, InputError
from vaegan.runtime import Sampler


def _reference(art_dir):
    with np.load(art_dir / "reference.npz") as r:
        return r["z"], r["images"]


def test_auto_says_what_it_picked_and_why(art_dir):
    with Sampler.load(art_dir) as s:
        info = s.backend_info
        assert info["backend"] in ("ort", "openvino", "tensorrt") and info["why"]
        assert info["decoder"]["artifact"].startswith("decoder.fp32")


@needs_openvino
def test_auto_runs_int8_and_half_precision_on_openvino_on_a_cpu(art_copy):
    """OpenVINO is the faster int8/half path on CPUs (docs/benchmarks.md); fp32 stays on ONNX Runtime."""
    from vaegan.runtime.backends.ort import GPU_PROVIDERS, available_providers

    if set(available_providers()) & set(GPU_PROVIDERS):
        pytest.skip("a GPU execution provider is present: auto prefers it")
    import json

    manifest = json.loads((art_copy / "manifest.json").read_text())
    for precision in ("fp16", "int8"):
        manifest["quality"][f"openvino-{precision}"]["within_tolerance"] = True
    (art_copy / "manifest.json").write_text(json.dumps(manifest))
    for precision in ("fp16", "int8"):
        with Sampler.load(art_copy, precision=precision) as s:
            assert s.backend_info["backend"] == "openvino", s.backend_info
            assert s.backend_info["decoder"]["artifact"] == f"openvino/decoder.{precision}.xml"
    with Sampler.load(art_copy) as s:
        assert s.backend_info["backend"] == "ort"
    # an IR the export measured as losing quality is not auto's first choice
    manifest["quality"]["openvino-int8"] |= {"within_tolerance": False, "delta_fd": 9.5}
    (art_copy / "manifest.json").write_text(json.dumps(manifest))
    with Sampler.load(art_copy, precision="int8") as s:
        assert s.backend_info["backend"] == "ort" and "+9.50" in s.backend_info["why"]


@pytest.mark.parametrize("backend", ["ort", OPENVINO])
def test_engines_agree_with_torch_within_one_grey_level(art_dir, backend):
    z, ref = _reference(art_dir)
    with Sampler.load(art_dir, backend=backend) as s:
        got = s.decode(z)
    assert got.dtype == np.uint8 and got.shape == ref.shape
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("backend", "precision"),
    [
        ("ort", "fp16"),
        ("ort", "int8"),
        pytest.param("openvino", "fp16", marks=needs_openvino),
        pytest.param("openvino", "int8", marks=needs_openvino),
    ],
)
def test_reduced_precisions_run_and_stay_close(art_dir, backend, precision):
    z, ref = _reference(art_dir)
    with Sampler.load(art_dir, backend=backend, precision=precision) as s:
        got = s.decode(z)
        mu, logvar = s.encode(ref)
    assert got.shape == ref.shape and mu.shape == (len(ref), 8) and np.isfinite(logvar).all()
    assert np.abs(got.astype(float) - ref.astype(float)).mean() < 8  # grey levels, averaged


@needs_openvino
def test_seeded_sampling_is_reproducible_across_backends_and_chunking(art_dir, sampler):
    a = sampler.sample(37, seed=5)  # max batch is 16: three chunks
    b = np.concatenate([sampler.decode(z) for z in np.split(sampler.latents(37, seed=5), [1, 20])])
    assert np.array_equal(a, b)
    with Sampler.load(art_dir, backend="openvino") as ov:
        assert np.array_equal(ov.latents(37, seed=5), sampler.latents(37, seed=5))
        assert np.abs(ov.sample(37, seed=5).astype(int) - a.astype(int)).max() <= 1
    assert not np.array_equal(sampler.sample(4, seed=6), sampler.sample(4, seed=5)[:4])


def test_temperature_scales_latents(sampler):
    """z = m_k + t * L_k eps, the component and eps fixed by the seed: halving t halves the distance
    to the component's centre (with N(0, I), m = 0 and L = I)."""
    z1, z05, z025 = (sampler.latents(3, seed=1, temperature=t) for t in (1.0, 0.5, 0.25))
    assert np.allclose(z1 - z05, 2 * (z05 - z025), atol=1e-6) and not np.allclose(z1, z05)


def test_encode_reconstruct_interpolate(sampler):
    x = sampler.sample(5, seed=0)
    mu, logvar = sampler.encode(x)
    assert mu.shape == logvar.shape == (5, 8) and mu.dtype == np.float32
    rec = sampler.reconstruct(x)
    assert rec.shape == x.shape
    strip = sampler.interpolate(x[0], x[1], steps=6)
    assert strip.shape == (6, *x.shape[1:])
    zs = sampler.latents(2, seed=3)
    strip = sampler.interpolate(zs[0], zs[1], steps=4)
    assert np.array_equal(strip[0], sampler.decode(zs[:1])[0])
    assert np.abs(strip[-1].astype(int) - sampler.decode(zs[1:])[0].astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.decode(np.zeros((2, 7), np.float32)), "latent dim"),
        (lambda s: s.decode(np.full((2, 8), np.nan, np.float32)), "NaN or inf"),
        (lambda s: s.decode(np.array([[np.inf] * 8], np.float32)), "NaN or inf"),
        (lambda s: s.decode(np.zeros((2, 8), np.int64)), "floating point"),
        (lambda s: s.decode(np.zeros((0, 8), np.float32)), "empty"),
        (lambda s: s.encode(np.zeros((2, 16, 16, 1), np.float32)), "uint8"),
        (lambda s: s.encode(np.zeros((2, 32, 32, 1), np.uint8)), r"\[N, 16, 16, 1\]"),
        (lambda s: s.encode(np.zeros((2, 16, 16, 3), np.uint8)), r"\[N, 16, 16, 1\]"),
        (lambda s: s.sample(0), "at least 1"),
        (lambda s: s.sample(-3), "at least 1"),
        (lambda s: s.sample(10**9), "over the limit"),
        (lambda s: s.sample(2.5), "integer"),
        (lambda s: s.sample(2, temperature=float("nan")), "temperature"),
        (lambda s: s.sample(2, temperature=0), "temperature"),
        (lambda s: s.sample(2, seed=-1), "seed"),
        (lambda s: s.interpolate(np.zeros(8), np.ones(8), steps=1), "steps"),
    ],
)
def test_bad_input_gets_a_typed_error(sampler, call, match):
    with pytest.raises(InputError, match=match):
        call(sampler)


def test_bad_load_arguments(art_dir):
    with pytest.raises(InputError, match="precision"):
        Sampler.load(art_dir, precision="int4")
    with pytest.raises(InputError, match="backend"):
        Sampler.load(art_dir, backend="tflite")


def test_modified_artifact_is_refused_by_sha256(art_copy):
    p = art_copy / "decoder.fp32.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"decoder\.fp32\.onnx does not match its sha256"):
        Sampler.load(art_copy)


def test_missing_artifact_is_named(art_copy):
    (art_copy / "encoder.fp32.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"encoder\.fp32\.onnx is listed in the manifest but missing"):
        Sampler.load(art_copy, backend="ort")


def test_newer_manifest_schema_is_refused(art_copy):
    p = art_copy / "manifest.json"
    m = json.loads(p.read_text())
    m["schema_version"] = 99
    p.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="upgrade vaegan"):
        Sampler.load(art_copy)


def test_not_an_artifact_dir(tmp_path):
    with pytest.raises(ArtifactError, match="manifest.json not found"):
        Sampler.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Sampler.load(tmp_path)


def _add_engine(art_copy, tags):
    p = art_copy / "manifest.json"
    m = json.loads(p.read_text())
    onnx = next(a for a in m["artifacts"] if a["component"] == "decoder" and a["format"] == "onnx")
    (art_copy / "tensorrt").mkdir()
    (art_copy / "tensorrt" / "decoder.fp32.plan").write_bytes(b"engine")
    import hashlib

    m["artifacts"].append(
        {
            **onnx,
            "path": "tensorrt/decoder.fp32.plan",
            "format": "tensorrt",
            "sha256": hashlib.sha256(b"engine").hexdigest(),
            "bytes": 6,
            "notes": {"engine": tags},
        }
    )
    p.write_text(json.dumps(m))


def test_tensorrt_engine_needs_tensorrt_or_a_matching_build(art_copy):
    _add_engine(art_copy, {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"})
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
            Sampler.load(art_copy, backend="tensorrt")
    else:
        with pytest.raises(ArtifactError, match="rebuild it on this device"):
            Sampler.load(art_copy, backend="tensorrt")
    with Sampler.load(art_copy) as s:  # auto falls back to an engine that runs here
        assert s.backend_info["backend"] != "tensorrt"


@pytest.mark.parametrize("backend", ["ort", OPENVINO])
def test_one_sampler_is_safe_to_share_between_threads(art_dir, backend):
    from concurrent.futures import ThreadPoolExecutor

    with Sampler.load(art_dir, backend=backend) as s:
        zs = [s.latents(1 + i % 5, seed=i) for i in range(64)]
        expected = [s.decode(z) for z in zs]
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(s.decode, zs))
    for e, g in zip(expected, got, strict=True):
        assert np.array_equal(e, g)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@needs_openvino
def test_openvino_splits_a_large_batch_across_streams_and_returns_the_same_images(art_dir, precision):
    from vaegan.runtime.backends.openvino import SPLIT_MIN_BATCH

    with Sampler.load(art_dir, backend="openvino", precision=precision) as s:
        runner = s.decoder_runner
        z = s.latents(SPLIT_MIN_BATCH, seed=4)
        split = s.decode(z)
        assert runner._local.streams, "a batch of SPLIT_MIN_BATCH ran on one request"
        one_by_one = np.concatenate([s.decode(z[i : i + 1]) for i in range(len(z))])
        runner._split = False
        whole = s.decode(z)
    assert np.abs(split.astype(int) - whole.astype(int)).max() <= 1
    assert np.abs(split.astype(int) - one_by_one.astype(int)).max() <= 1

"""The bad-input sweep: property-based inputs to the runtime API and the HTTP API, corrupted
artifacts, and the server under overload and SIGTERM. Every case must get the documented answer."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from tests.runtime.reliability import measured, tried
from vaegan.core.errors import ArtifactError, InputError
from vaegan.runtime import Sampler

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
DTYPES = st.sampled_from(
    [np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]
)


@SETTINGS
@given(data=st.data())
def test_decode_any_array(sampler, data):
    """Valid if and only if: floating point, [N, latent_dim] or [latent_dim], 1 <= N <= max_n, finite.
    Half the examples are drawn near the valid shape, so a runtime that refused everything would fail."""
    tried("runtime_api", "decode")
    z = data.draw(
        st.one_of(
            arrays(DTYPES, array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=20)),
            arrays(
                DTYPES,
                st.tuples(st.integers(0, 20), st.sampled_from([sampler.latent_dim, sampler.latent_dim + 1])),
            ),
        )
    )
    zz = z[None] if z.ndim == 1 else z
    valid = (
        np.issubdtype(z.dtype, np.floating)
        and zz.ndim == 2
        and zz.shape[1] == sampler.latent_dim
        and 1 <= len(zz) <= sampler.max_n
        and bool(np.isfinite(zz.astype(np.float32)).all())
    )
    if not valid:
        with pytest.raises(InputError):
            sampler.decode(z)
        return
    out = sampler.decode(z)
    assert out.dtype == np.uint8 and out.shape == (len(zz), *sampler.image_shape)


@SETTINGS
@given(
    arrays(
        st.sampled_from([np.float32, np.float64]),
        st.tuples(st.integers(1, 40), st.just(8)),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
    )
)
def test_decode_nan_inf_and_huge_latents(sampler, z):
    tried("runtime_api", "decode_values")
    if not np.isfinite(z.astype(np.float32)).all():
        with pytest.raises(InputError, match="NaN or inf"):
            sampler.decode(z)
    else:
        out = sampler.decode(z)  # huge but finite latents still give valid images
        assert out.dtype == np.uint8 and len(out) == len(z)


@SETTINGS
@given(data=st.data())
def test_encode_any_array(sampler, data):
    """Valid if and only if: uint8, [N, H, W, C] or [H, W, C] of the model's image shape, 1 <= N <= max_n.
    Half the examples are drawn at or near the image shape, so a runtime that refused everything would fail."""
    tried("runtime_api", "encode")
    h, w, c = sampler.image_shape
    x = data.draw(
        st.one_of(
            arrays(DTYPES, array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=20)),
            arrays(
                st.sampled_from([np.uint8, np.uint8, np.float32]),
                st.tuples(st.integers(0, 9), st.just(h), st.sampled_from([w, w + 1]), st.just(c)),
            ),
        )
    )
    xx = x[None] if x.ndim == 3 else x
    valid = (
        x.dtype == np.uint8
        and xx.ndim == 4
        and xx.shape[1:] == sampler.image_shape
        and 1 <= len(xx) <= sampler.max_n
    )
    if not valid:
        with pytest.raises(InputError):
            sampler.encode(x)
        return
    mu, logvar = sampler.encode(x)
    assert mu.shape == logvar.shape == (len(xx), sampler.latent_dim) and np.isfinite(mu).all()


@SETTINGS
@given(
    st.one_of(
        st.integers(-(10**12), 10**12),
        st.floats(allow_nan=True),
        st.none(),
        st.text(max_size=5),
        st.booleans(),
    ),
    st.one_of(st.none(), st.integers(-5, 2**40), st.floats(), st.text(max_size=3)),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 50)),
)
def test_sample_any_arguments(sampler, n, seed, temperature):
    """Valid if and only if: n an int in 1..max_n, seed None or an int >= 0, temperature a number in (0, 10]."""
    tried("runtime_api", "sample")
    valid = (
        isinstance(n, int)
        and not isinstance(n, bool)
        and 1 <= n <= sampler.max_n
        and (seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0))
        and isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and bool(np.isfinite(temperature))
        and 0 < temperature <= 10
    )
    if not valid:
        with pytest.raises(InputError):
            sampler.sample(n, seed=seed, temperature=temperature)
        return
    out = sampler.sample(n, seed=seed, temperature=temperature)
    assert out.dtype == np.uint8 and out.shape == (n, *sampler.image_shape)


# ------------------------------------------------------------------------------ corrupted artifacts
def _truncate(p):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3])


def _flip(p):
    b = bytearray(p.read_bytes())
    for i in range(0, len(b), max(1, len(b) // 7)):
        b[i] ^= 0x5A
    p.write_bytes(bytes(b))


CORRUPTIONS = {
    "truncated onnx": ("decoder.fp32.onnx", _truncate, "does not match its sha256"),
    "flipped bytes": ("encoder.fp32.onnx", _flip, "does not match its sha256"),
    "missing file": ("decoder.fp32.onnx", lambda p: p.unlink(), "listed in the manifest but missing"),
    "openvino weights changed": ("openvino/decoder.fp32.bin", _flip, "does not match its sha256"),
}


@pytest.mark.reliability("artifacts", "corruption refused")
@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupted_artifact_is_refused_naming_the_file(art_copy, kind):
    name, corrupt, needle = CORRUPTIONS[kind]
    corrupt(art_copy / name)
    backend = "openvino" if name.startswith("openvino") else "ort"
    with pytest.raises(ArtifactError, match=needle) as e:
        Sampler.load(art_copy, backend=backend)
    assert name.split("/")[-1] in str(e.value)


@pytest.mark.reliability("artifacts", "manifest edit refused")
@pytest.mark.parametrize("edit", ["sha", "path", "truncate_json", "artifacts_not_a_list"])
def test_edited_manifest_is_refused(art_copy, edit):
    p = art_copy / "manifest.json"
    m = json.loads(p.read_text())
    dec = next(a for a in m["artifacts"] if a["path"] == "decoder.fp32.onnx")
    if edit == "sha":
        dec["sha256"] = "0" * 64
    elif edit == "path":
        dec["path"] = "decoder.int8.onnx"  # points at another real file: its hash gives it away
    elif edit == "artifacts_not_a_list":
        m["artifacts"] = {"oops": 1}
    text = json.dumps(m)
    p.write_text(text[: len(text) // 2] if edit == "truncate_json" else text)
    with pytest.raises(ArtifactError) as e:
        Sampler.load(art_copy, backend="ort")
    msg = str(e.value)
    assert ("decoder" in msg and "sha256" in msg) or "manifest" in msg


# --------------------------------------------------------------------------------------- HTTP API
httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")


@pytest.fixture(scope="module")
def http_url(art_dir):
    from tests.runtime.live import LiveServer
    from vaegan.runtime.server import ServeConfig, create_app

    app = create_app(Sampler.load(art_dir, backend="ort"), ServeConfig(max_n=64, max_body_bytes=64 << 10))
    with LiveServer(app) as url:
        yield url


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=6,
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["n", "seed", "temperature", "format", "x"]), JSON_VALUES, max_size=4
        ),
        JSON_VALUES,
    )
)
def test_sample_endpoint_any_json(http_url, body):
    r = httpx.post(f"{http_url}/v1/sample", content=json.dumps(body), timeout=30)
    tried("http_api", f"json {r.status_code}")
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.json()["error"]


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=2048), st.sampled_from(["/v1/sample", "/v1/reconstruct"]))
def test_any_bytes_to_any_endpoint(http_url, body, path):
    r = httpx.post(f"{http_url}{path}", content=body, timeout=30)
    tried("http_api", f"bytes {r.status_code}")
    assert r.status_code in (200, 400, 413), r.text
    if r.status_code != 200:
        assert r.json()["error"]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(1, 200), st.integers(1, 200), st.sampled_from(["L", "RGB", "RGBA", "P", "I;16"]))
def test_reconstruct_any_png(http_url, w, h, mode):
    import io

    from PIL import Image

    img = Image.new(mode if mode != "I;16" else "I;16", (w, h))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    r = httpx.post(f"{http_url}/v1/reconstruct", content=buf.getvalue(), timeout=30)
    tried("http_api", f"png {r.status_code}")
    assert r.status_code == 200, r.text


def test_server_still_healthy_after_the_sweep(http_url):
    assert httpx.get(f"{http_url}/healthz").json()["status"] == "ok"


# ------------------------------------------------------------------------- overload and SIGTERM
def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_overload_gets_fast_503s_and_sigterm_answers_accepted_requests(art_dir):
    from tests.runtime.live import start_serve

    proc, url = start_serve(
        art_dir, "--max-queue", "1024", "--max-batch", "16", "--max-n", "512", "--max-delay-ms", "2"
    )
    try:
        rss0 = _rss_kib(proc.pid)

        def one(i):
            t0 = time.perf_counter()
            try:
                r = httpx.post(f"{url}/v1/sample", json={"n": 512, "seed": i, "format": "npy"}, timeout=60)
            except httpx.HTTPError as e:
                return ("error", type(e).__name__, time.perf_counter() - t0)
            return (r.status_code, r.headers.get("retry-after"), time.perf_counter() - t0)

        results = []
        for _ in range(3):  # bounded: 3 waves of 48 concurrent requests
            with ThreadPoolExecutor(48) as pool:
                results += list(pool.map(one, range(48)))
        codes = Counter(r[0] for r in results)
        assert set(codes) <= {200, 503}, codes
        assert codes[503] > 0 and codes[200] > 0
        assert all(r[1] == "1" for r in results if r[0] == 503)
        slow_503 = np.median([r[2] for r in results if r[0] == 503])
        ok_200 = np.median([r[2] for r in results if r[0] == 200])
        rss1 = _rss_kib(proc.pid)
        assert rss1 - rss0 < 300 * 1024, (rss0, rss1)  # memory stays bounded

        # SIGTERM with requests in flight: each one accepted is answered, then a clean exit
        with ThreadPoolExecutor(8) as pool:
            futs = [pool.submit(one, 1000 + i) for i in range(8)]
            time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            last = [f.result() for f in futs]
        assert all(r[0] in (200, 503, "error") for r in last)
        accepted = [r for r in last if r[0] == 200]
        # uvicorn drains, then re-raises the captured SIGTERM so supervisors see the signal
        assert proc.wait(60) in (0, -signal.SIGTERM)
        err = proc.stderr.read()
        assert "Application shutdown complete" in err and "Traceback" not in err
        measured(
            "overload",
            requests=len(results),
            completed=codes[200],
            refused_503=codes[503],
            median_503_s=round(float(slow_503), 4),
            median_200_s=round(float(ok_200), 4),
            rss_growth_mib=round((rss1 - rss0) / 1024, 1),
            sigterm_in_flight=len(last),
            sigterm_answered_200=len(accepted),
            sigterm_clean_shutdown=True,
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

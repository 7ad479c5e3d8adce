"""The HTTP API for real: uvicorn on a loopback port, httpx as the client."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.runtime.live import LiveServer  # noqa: E402


@pytest.fixture(scope="module")
def base_url(art_dir):
    from vaegan.runtime import Sampler
    from vaegan.runtime.server import ServeConfig, create_app

    s = Sampler.load(art_dir, backend="ort")
    app = create_app(
        s, ServeConfig(max_batch=16, max_delay_ms=2, max_queue=512, max_n=256, max_body_bytes=1 << 20)
    )
    with LiveServer(app) as url:
        yield url


def test_sample_png_and_npy(base_url, sampler):
    from PIL import Image

    r = httpx.post(f"{base_url}/v1/sample", json={"n": 4, "seed": 3})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size[0] > 16
    r = httpx.post(f"{base_url}/v1/sample", json={"n": 5, "seed": 3, "format": "npy"})
    images = np.load(io.BytesIO(r.content))
    assert images.shape == (5, 16, 16, 1) and images.dtype == np.uint8
    assert np.array_equal(images, sampler.sample(5, seed=3))  # same seed, same images as the API


def test_reconstruct(base_url, sampler):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(sampler.sample(1, seed=0)[0, ..., 0]).save(buf, format="PNG")
    r = httpx.post(
        f"{base_url}/v1/reconstruct", content=buf.getvalue(), headers={"content-type": "image/png"}
    )
    assert r.status_code == 200
    assert Image.open(io.BytesIO(r.content)).size == (16, 16)


def test_health_and_metrics(base_url):
    h = httpx.get(f"{base_url}/healthz").json()
    assert h["status"] == "ok" and h["model"]["latent_dim"] == 8
    httpx.post(f"{base_url}/v1/sample", json={"n": 2})
    text = httpx.get(f"{base_url}/metrics").text
    assert 'vaegan_requests_total{endpoint="sample",status="200"}' in text
    assert "vaegan_batch_size_bucket" in text and "vaegan_request_seconds_bucket" in text


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "needle"),
    [
        ("/v1/sample", {"content": b"{nope"}, 400, "not valid JSON"),
        ("/v1/sample", {"json": [1, 2]}, 400, "JSON object"),
        ("/v1/sample", {"json": {"n": 0}}, 400, "at least 1"),
        ("/v1/sample", {"json": {"n": 100000}}, 400, "--max-n"),
        ("/v1/sample", {"json": {"n": "many"}}, 400, "integer"),
        ("/v1/sample", {"json": {"n": 2, "temperature": -1}}, 400, "temperature"),
        ("/v1/sample", {"json": {"n": 2, "format": "gif"}}, 400, "format"),
        ("/v1/sample", {"json": {"n": 2, "colour": "red"}}, 400, "unknown fields"),
        ("/v1/sample", {"json": {"n": 2, "seed": -4}}, 400, "seed"),
        ("/v1/reconstruct", {"content": b""}, 400, "image file"),
        ("/v1/reconstruct", {"content": b"\x89PNG\r\n\x1a\nbroken"}, 400, "not a readable image"),
        ("/v1/reconstruct", {"content": b"x" * (2 << 20)}, 413, "over"),
        ("/v1/nothing", {"json": {}}, 404, "not found"),
    ],
)
def test_bad_requests_get_4xx_json_and_the_server_keeps_serving(base_url, path, kwargs, status, needle):
    r = httpx.post(f"{base_url}{path}", **kwargs)
    assert r.status_code == status
    assert needle.lower() in r.json()["error"].lower()
    assert httpx.post(f"{base_url}/v1/sample", json={"n": 1}).status_code == 200


def test_bounded_load_on_loopback(base_url):
    """300 requests from 16 threads: every one answered 200, requests merged into batches."""
    before = httpx.get(f"{base_url}/metrics").text

    def one(i):
        with httpx.Client(timeout=30) as c:
            return c.post(
                f"{base_url}/v1/sample", json={"n": 1 + i % 3, "seed": i, "format": "npy"}
            ).status_code

    t0 = time.time()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(one, range(300)))
    assert codes.count(200) == 300 and time.time() - t0 < 120
    after = httpx.get(f"{base_url}/metrics").text
    assert _count(after, "vaegan_batch_size_count") - _count(before, "vaegan_batch_size_count") < 300


def _count(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0

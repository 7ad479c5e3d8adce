"""`vaegan serve` against hostile clients, for real over loopback: expensive uploads, huge requests,
idle and trickling sockets, odd JSON, and a token. Small sizes and bounded loops keep it fast."""

from __future__ import annotations

import io
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.runtime.live import LiveServer, start_serve  # noqa: E402


def _big_png(side: int = 3000) -> bytes:
    """A 9-megapixel 16-bit PNG that compresses to a few KB: cheap to send, costly to decode."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((side, side), 30000, np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def _idle_sockets(
    url: str, n: int, partial: bytes = b"POST /v1/sample HTTP/1.1\r\nHost: x\r\n"
) -> list[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    out = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(partial)
        out.append(s)
    return out


@pytest.fixture(scope="module")
def guarded(art_dir):
    """A real `vaegan serve` with tight limits: the queue, decoding, timeouts and connections."""
    proc, url = start_serve(
        art_dir,
        "--max-batch", "16", "--max-queue", "256", "--max-n", "128", "--max-decoding", "2",
        "--header-timeout", "1", "--body-timeout", "1", "--keep-alive", "1", "--max-connections", "400",
    )  # fmt: skip
    yield url
    proc.kill()
    proc.wait()


@pytest.mark.slow
@pytest.mark.reliability("server", "sample answered under a reconstruct flood and idle sockets")
def test_sample_keeps_answering_under_a_reconstruct_flood_and_idle_sockets(guarded):
    url, png = guarded, _big_png()
    idle = _idle_sockets(url, 200)
    try:
        with ThreadPoolExecutor(24) as pool:

            def upload(_):
                try:
                    return httpx.post(f"{url}/v1/reconstruct", content=png, timeout=60).status_code
                except httpx.HTTPError as e:
                    return type(e).__name__

            flood = [pool.submit(upload, i) for i in range(48)]
            cheap = []
            for _ in range(10):
                t0 = time.perf_counter()
                r = httpx.post(f"{url}/v1/sample", json={"n": 1, "seed": 0}, timeout=30)
                cheap.append((r.status_code, time.perf_counter() - t0))
                assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
            codes = [f.result() for f in flood]
    finally:
        for s in idle:
            s.close()
    assert set(codes) <= {200, 503}, codes
    assert codes.count(503) > 0  # uploads beyond --max-decoding were turned away, not queued
    assert all(code in (200, 503) for code, _ in cheap)
    assert sum(code == 200 for code, _ in cheap) >= 8
    assert max(t for _, t in cheap) < 5.0, cheap  # bounded: it never waits behind the uploads


def test_the_queue_counts_images_and_keeps_room_for_small_requests(guarded):
    url = guarded

    def big(i):
        return httpx.post(
            f"{url}/v1/sample", json={"n": 128, "seed": i, "format": "npy"}, timeout=60
        ).status_code

    with ThreadPoolExecutor(12) as pool:
        flood = [pool.submit(big, i) for i in range(36)]
        small = [
            httpx.post(f"{url}/v1/sample", json={"n": 1, "format": "npy"}, timeout=30).status_code
            for _ in range(8)
        ]
        codes = [f.result() for f in flood]
    assert set(codes) <= {200, 503} and 503 in codes  # 36 x 128 images do not fit a 256-image queue
    assert small.count(200) == len(small)  # one batch of room is kept for small requests


def test_a_socket_that_never_finishes_its_request_head_is_closed(guarded):
    (s,) = _idle_sockets(guarded, 1)
    s.settimeout(5)
    t0 = time.perf_counter()
    assert s.recv(1024) == b""  # the server closed it
    assert time.perf_counter() - t0 < 4
    s.close()


def test_a_body_slower_than_the_timeout_gets_408(guarded):
    (s,) = _idle_sockets(
        guarded,
        1,
        b"POST /v1/sample HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{",
    )
    s.settimeout(5)
    reply = s.recv(4096)
    s.close()
    assert reply.startswith(b"HTTP/1.1 408")


@pytest.fixture(scope="module")
def open_server(art_dir):
    from vaegan.config import ServeConfig
    from vaegan.runtime import Sampler
    from vaegan.runtime.server import create_app

    cfg = ServeConfig(max_n=64, max_queue=256, token="s3cret-token-0123456789")
    with Sampler.load(art_dir, backend="ort") as s, LiveServer(create_app(s, cfg), cfg) as url:
        yield url


AUTH = {"Authorization": "Bearer s3cret-token-0123456789"}


@pytest.mark.parametrize(
    "body, needle",
    [
        ("[" * 100_000, "nested too deeply"),
        (json.dumps({"n": 1, "temperature": True}), "temperature must be a number"),
        (json.dumps({"n": True}), "n must be an integer"),
    ],
)
def test_odd_json_gets_400_with_the_reason(open_server, body, needle):
    r = httpx.post(f"{open_server}/v1/sample", content=body, headers=AUTH, timeout=30)
    assert r.status_code == 400 and needle in r.json()["error"], r.text


def test_token_guards_everything_but_healthz(open_server):
    assert httpx.get(f"{open_server}/healthz").status_code == 200
    for method, path in (("POST", "/v1/sample"), ("GET", "/metrics")):
        r = httpx.request(method, f"{open_server}{path}", json={"n": 1} if method == "POST" else None)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        wrong = httpx.request(method, f"{open_server}{path}", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    assert httpx.post(f"{open_server}/v1/sample", json={"n": 1}, headers=AUTH).status_code == 200
    assert httpx.get(f"{open_server}/metrics", headers=AUTH).status_code == 200


def test_numpy_scalars_and_ragged_input_through_the_api(sampler):
    from vaegan.core.errors import InputError

    a = sampler.sample(2, seed=1, temperature=np.float32(0.5))
    b = sampler.sample(2, seed=1, temperature=0.5)
    assert np.array_equal(a, b)
    with pytest.raises(InputError, match="rectangular"):
        sampler.decode([[0.0] * 8, [0.0] * 3])
    with pytest.raises(InputError, match="temperature must be a number"):
        sampler.sample(1, temperature=True)

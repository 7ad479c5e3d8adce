"""The same `vaegan serve` over its three front doors, 16 clients x n=1 each: /v1/sample (httpx,
npy), the Open Inference Protocol over HTTP (tritonclient.http, binary tensors) and over gRPC
(tritonclient.grpc). One server process for all three, so the rows differ only in the protocol.
Each row reports req/s and the p50/p99 latency of single requests in `extra_info`."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

CLIENTS, REQUESTS = 16, 256


@pytest.fixture(scope="module")
def server(art_dir):
    from tests.runtime.live import free_port, start_serve

    grpc_port = free_port()
    proc, url = start_serve(art_dir, "--grpc-port", str(grpc_port), stderr=subprocess.DEVNULL)
    yield url, f"127.0.0.1:{grpc_port}"
    proc.terminate()
    proc.wait(30)


def _client_factory(protocol: str, url: str, grpc_url: str, latent_dim: int):
    """A function making one request; each thread gets its own client (tritonclient's are not
    shared between threads)."""
    local = threading.local()
    z = np.random.default_rng(0).standard_normal((1, latent_dim), dtype=np.float32)
    if protocol == "v1":
        import httpx

        def call() -> None:
            c = getattr(local, "c", None) or setattr(local, "c", httpx.Client()) or local.c
            r = c.post(f"{url}/v1/sample", json={"n": 1, "format": "npy"}, timeout=60)
            assert r.status_code == 200

        return call
    module = __import__(f"tritonclient.{protocol}", fromlist=["x"])

    def call() -> None:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = module.InferenceServerClient(
                url.removeprefix("http://") if protocol == "http" else grpc_url
            )
        inp = module.InferInput("z", [1, latent_dim], "FP32")
        inp.set_data_from_numpy(z)
        assert c.infer("decoder", [inp]).as_numpy("images").shape[0] == 1

    return call


@pytest.mark.parametrize("protocol", ["v1", "http", "grpc"])
def test_protocol_throughput(benchmark, server, art_dir, protocol):
    from vaegan.core.manifest import Manifest

    url, grpc_url = server
    call = _client_factory(protocol, url, grpc_url, Manifest.load(art_dir).latent_dim)
    latencies: list[float] = []

    def timed(_: int) -> None:
        t0 = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t0)

    def burst() -> None:
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(timed, range(REQUESTS)))

    benchmark.group = f"protocols: {REQUESTS} requests of n=1 from {CLIENTS} clients"
    benchmark.pedantic(burst, rounds=5, warmup_rounds=1, iterations=1)
    lat = np.array(latencies[REQUESTS:]) * 1e3  # the warm-up round left out
    benchmark.extra_info.update(
        req_per_s=round(REQUESTS / benchmark.stats.stats.median, 1),
        p50_ms=round(float(np.percentile(lat, 50)), 2),
        p99_ms=round(float(np.percentile(lat, 99)), 2),
    )

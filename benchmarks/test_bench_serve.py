"""`vaegan serve` throughput over loopback HTTP: micro-batching on (--max-batch 64, the default
--max-delay-ms 0) against off (--max-batch 1, every request its own engine call). The server is a
separate process; 16 client threads send 256 requests of n=1 each (`format: npy`, so image encoding
is not what is measured)."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

CLIENTS, REQUESTS, N = 16, 256, 1


@pytest.fixture(params=[64, 1], ids=["micro-batching", "no-batching"])
def server(request, art_dir):
    from tests.runtime.live import start_serve

    proc, url = start_serve(
        art_dir, "--max-batch", str(request.param), "--max-queue", str(REQUESTS), stderr=subprocess.DEVNULL
    )
    yield url, request.param
    proc.terminate()
    proc.wait(30)


def test_serve_throughput(benchmark, server):
    url, max_batch = server
    client = httpx.Client(limits=httpx.Limits(max_connections=CLIENTS))

    def one(i: int) -> int:
        r = client.post(f"{url}/v1/sample", json={"n": N, "seed": i, "format": "npy"}, timeout=60)
        return r.status_code

    def burst() -> list[int]:
        with ThreadPoolExecutor(CLIENTS) as pool:
            return list(pool.map(one, range(REQUESTS)))

    benchmark.group = f"serve: {REQUESTS} requests of n={N} from {CLIENTS} clients over HTTP"
    benchmark.extra_info["max_batch"] = max_batch
    codes = benchmark.pedantic(burst, rounds=5, warmup_rounds=1, iterations=1)
    client.close()
    assert codes == [200] * REQUESTS

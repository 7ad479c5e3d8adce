"""Micro-batcher throughput under concurrency: 16 threads send 256 requests of n=1, merged into
engine batches (with and without a wait for company), against a batcher that runs one request at a
time (a server without batching) and against the threads calling the engine directly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from vaegan.runtime.batcher import MicroBatcher

CALLERS, REQUESTS = 16, 256


@pytest.fixture(scope="module")
def sampler(art_dir):
    from vaegan.runtime import Sampler

    return Sampler.load(art_dir, backend="ort")


def _run_all(fn, zs):
    with ThreadPoolExecutor(CALLERS) as pool:
        return list(pool.map(fn, zs))


@pytest.mark.parametrize(
    ("max_batch", "max_delay_ms"),
    [(64, 0), (64, 2), (1, 0)],
    ids=["batch64-delay0", "batch64-delay2", "batch1"],
)
def test_concurrent_n1_through_the_batcher(benchmark, sampler, max_batch, max_delay_ms):
    zs = [sampler.latents(1, seed=i) for i in range(REQUESTS)]
    b = MicroBatcher(sampler.decode, max_batch=max_batch, max_delay_ms=max_delay_ms, max_queue=REQUESTS)
    benchmark.group = f"{REQUESTS} requests of n=1 from {CALLERS} threads"
    out = benchmark.pedantic(_run_all, args=(lambda z: b(z, timeout=30), zs), rounds=5, iterations=1)
    benchmark.extra_info["mean_batch"] = b.stats.rows / max(b.stats.batches, 1)
    b.close()
    assert len(out) == REQUESTS


def test_concurrent_n1_calling_the_engine_directly(benchmark, sampler):
    zs = [sampler.latents(1, seed=i) for i in range(REQUESTS)]
    benchmark.group = f"{REQUESTS} requests of n=1 from {CALLERS} threads"
    out = benchmark.pedantic(_run_all, args=(sampler.decode, zs), rounds=5, iterations=1)
    assert len(out) == REQUESTS

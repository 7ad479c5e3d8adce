"""Micro-batcher throughput under concurrency: many callers of n=1 merged into engine batches,
against the same callers each running the engine alone."""

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


def test_concurrent_n1_with_micro_batching(benchmark, sampler):
    zs = [sampler.latents(1, seed=i) for i in range(REQUESTS)]
    b = MicroBatcher(sampler.decode, max_batch=64, max_delay_ms=2, max_queue=REQUESTS)
    benchmark.group = "serve-like: 256 requests of n=1 from 16 threads"
    out = benchmark.pedantic(_run_all, args=(lambda z: b(z, timeout=30), zs), rounds=5, iterations=1)
    b.close()
    assert len(out) == REQUESTS


def test_concurrent_n1_without_batching(benchmark, sampler):
    zs = [sampler.latents(1, seed=i) for i in range(REQUESTS)]
    benchmark.group = "serve-like: 256 requests of n=1 from 16 threads"
    out = benchmark.pedantic(_run_all, args=(sampler.decode, zs), rounds=5, iterations=1)
    assert len(out) == REQUESTS

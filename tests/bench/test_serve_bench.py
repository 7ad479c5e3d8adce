"""benchmarks/serve_bench.py against a real `vaegan serve`: its clients get answers on every protocol,
and the server's own split of a request (Triton's statistics extension) accounts for its time. What
it measures is not asserted here (speed is for the benchmark itself); that it measures is."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
pytest.importorskip("tritonclient.grpc")

from benchmarks import serve_bench  # noqa: E402


@pytest.fixture(scope="module")
def server(art_dir):
    import os

    proc, port, gport, ready, first = serve_bench.start_server(art_dir, "ort", dict(os.environ))
    yield port, gport, ready, first
    serve_bench.stop(proc)


def test_cold_start_is_timed_to_ready_then_to_a_first_answer(server):
    _, _, ready, first = server
    assert 0 < ready <= first


@pytest.mark.parametrize("protocol", serve_bench.PROTOCOLS)
def test_a_case_counts_answered_requests_and_the_servers_split(server, art_dir, protocol):
    port, gport, _, _ = server
    row = serve_bench.run_case(protocol, port, gport, art_dir, clients=2, seconds=0.6, warmup=0.2)
    assert row["errors"] == 0 and row["requests"] > 0
    assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    s = row["server"]
    assert s["requests"] > 0 and s["mean_batch"] >= 1
    parts = sum(s[p + "_ms"] for p in serve_bench.PARTS)
    assert 0 < parts <= s["success_ms"] * 1.01  # the parts lie inside the request's own time
    assert s["success_ms"] < row["mean_ms"]  # what the client waits includes the server's time

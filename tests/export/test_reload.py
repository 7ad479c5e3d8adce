"""Model updates without downtime (third attack round, issue 29): a re-export into a served dir is
loaded on request (Triton's repository API over HTTP and gRPC) or on change (--reload poll), verified
and warmed beside the served model, then swapped while 64 clients (HTTP and gRPC) keep sending: no
request fails. A broken export is refused and the old model keeps serving. A real `vaegan serve`."""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
grpcclient = pytest.importorskip("tritonclient.grpc")

from tests.runtime.live import free_port, start_serve  # noqa: E402
from vaegan.config import ExportOptions  # noqa: E402
from vaegan.export.pipeline import export_run  # noqa: E402

TOKEN = "reload-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _export(run, out, opt_batch: int) -> str:
    export_run(run, out, ExportOptions(precisions=["fp32"], quality_n=64, max_batch=8, opt_batch=opt_batch))
    return hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()


class Clients:
    """n HTTP and n gRPC clients, each sending one latent at a time until stopped; every answer that
    is not a 200 / OK is kept."""

    def __init__(self, url: str, grpc_url: str, n: int):
        self.stop, self.failures, self.ok = threading.Event(), [], 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._http, args=(url,)) for _ in range(n)]
        self.threads += [threading.Thread(target=self._grpc, args=(grpc_url,)) for _ in range(n)]

    def _record(self, failure: str | None) -> None:
        with self.lock:
            if failure is None:
                self.ok += 1
            else:
                self.failures.append(failure)

    def _http(self, url: str) -> None:
        body = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 8], "data": [0.1] * 8}]}
        with httpx.Client(timeout=60, headers=AUTH) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(f"{url}/v2/models/decoder/infer", json=body)
                    self._record(None if r.status_code == 200 else f"http {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    self._record(f"http {type(e).__name__}")

    def _grpc(self, grpc_url: str) -> None:
        from tritonclient.utils import InferenceServerException

        z = np.full((1, 8), 0.1, np.float32)
        with grpcclient.InferenceServerClient(grpc_url) as c:
            while not self.stop.is_set():
                inp = grpcclient.InferInput("z", [1, 8], "FP32")
                inp.set_data_from_numpy(z)
                try:
                    c.infer("decoder", [inp], headers={"authorization": f"Bearer {TOKEN}"}, client_timeout=60)
                    self._record(None)
                except InferenceServerException as e:
                    self._record(f"grpc {e.status()} {e.message()[:200]}")

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def wait_for(self, answers: int, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        start = self.ok
        while self.ok < start + answers and time.time() < deadline:
            time.sleep(0.05)


def _served(url: str) -> dict:
    return httpx.get(f"{url}/healthz", headers=AUTH, timeout=30).json()


@pytest.mark.slow
@pytest.mark.reliability("round3", "reload under load (64 clients, HTTP and gRPC), then a broken export")
def test_reload_under_load_and_a_broken_export_keeps_the_old_model(trained_run, tmp_path):
    art = tmp_path / "art"
    first = _export(trained_run, art, 2)
    grpc_port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - a file: a chatty server never blocks on it
    proc, url = start_serve(
        art, "--grpc-port", str(grpc_port), "--token", TOKEN, "--max-delay-ms", "2", stderr=log
    )
    try:
        assert _served(url)["manifest_sha256"] == first and not _served(url)["stale"]
        with Clients(url, f"127.0.0.1:{grpc_port}", 32) as clients:
            clients.wait_for(100)
            second = _export(trained_run, art, 4)  # re-export into the served dir, under load
            assert second != first and _served(url)["stale"]  # said, not hidden
            r = httpx.post(f"{url}/v2/repository/models/decoder/load", headers=AUTH, timeout=120)
            assert r.status_code == 200, r.text
            assert r.json()["manifest_sha256"] == second == _served(url)["manifest_sha256"]
            clients.wait_for(100)
            # the same over gRPC
            with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as c:
                c.load_model("decoder", headers={"authorization": f"Bearer {TOKEN}"})
            clients.wait_for(100)
            # a broken export: refused, the old model keeps serving
            onnx_file = art / "decoder.fp32.onnx"
            data = bytearray(onnx_file.read_bytes())
            data[len(data) // 2] ^= 0xFF
            onnx_file.write_bytes(bytes(data))
            r = httpx.post(f"{url}/v2/repository/models/decoder/load", headers=AUTH, timeout=120)
            assert r.status_code == 409 and "still serving the previous model" in r.json()["error"], r.text
            assert "sha256" in r.json()["error"]
            clients.wait_for(100)
        assert not clients.failures, clients.failures[:5]
        assert clients.ok > 400
        assert _served(url)["manifest_sha256"] == second
        assert httpx.post(f"{url}/v2/repository/models/decoder/load", timeout=30).status_code == 401  # token
    finally:
        proc.kill()
        proc.wait()
        log.close()


@pytest.mark.slow
@pytest.mark.reliability("round3", "--reload poll picks up a re-export")
def test_reload_poll_follows_a_reexport(trained_run, tmp_path):
    art = tmp_path / "art"
    _export(trained_run, art, 2)
    proc, url = start_serve(art, "--reload", "poll", "--token", TOKEN)
    try:
        second = _export(trained_run, art, 4)
        deadline = time.time() + 30
        while _served(url)["manifest_sha256"] != second and time.time() < deadline:
            time.sleep(0.2)
        assert _served(url)["manifest_sha256"] == second and not _served(url)["stale"]
        assert httpx.post(f"{url}/v1/sample", json={"n": 1}, headers=AUTH, timeout=30).status_code == 200
    finally:
        proc.kill()
        proc.wait()

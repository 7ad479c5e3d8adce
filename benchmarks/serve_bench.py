"""`vaegan serve` under load, measured the way perf_analyzer measures Triton.

    python benchmarks/serve_bench.py artifacts/digits [artifacts/letters64 ...]   # make bench-serve

Per artifact dir, one real `vaegan serve` process (HTTP and gRPC) and, for each protocol (HTTP /v1,
HTTP v2 with binary tensors, gRPC), a concurrency sweep (1, 4, 16, 64 closed-loop clients, one
image per request) run from separate client processes, so no client holds the server's GIL. The
clients send pre-built request bytes on keep-alive connections (raw HTTP/1.1, gRPC with bytes in and
out) and check each answer's status, so what is timed is the server, not a client library.

Each case reports req/s, images/s and p50/p90/p99 latency, and the server's own split of a request
(Triton's statistics extension, read before and after the case): reading and checking it, waiting
for the engine, the engine, building the answer; "outside" is the client's mean latency minus the
server's, i.e. HTTP/gRPC framing, sockets and the client. The engine's own batch-1 and batch-64
images/s are measured in this process first, with the same backend and precision the server runs.

Cold start: from `vaegan serve ART` to the first 200 on /v2/health/ready and to the first answered
request, for each engine, twice (the second start shows what the OS's file cache saves).

Results: docs/bench/serve_<name>.json (with provenance); `make docs` renders the tables in
docs/benchmarks.md from them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS_SCHEMA = 1  # docs/bench/serve_<name>.json (benchmarks/docs.py renders docs/benchmarks.md from it)
PROTOCOLS = ("http-v1", "http-v2", "grpc")
CONCURRENCY = (1, 4, 16, 64)
MAX_CLIENT_PROCS = 4  # 64 clients as 4 processes x 16 threads: enough processes to keep the GIL out of it
PARTS = ("compute_input", "queue", "compute_infer", "compute_output")


# --- requests, built once -----------------------------------------------------------------------


def request_bytes(protocol: str, port: int, latent_dim: int) -> bytes:
    """The whole request a client sends, over and over (raw HTTP/1.1, or a ModelInferRequest)."""
    z = np.random.default_rng(0).standard_normal((1, latent_dim)).astype("<f4")
    if protocol == "grpc":
        from tritonclient.grpc import service_pb2 as pb

        req = pb.ModelInferRequest(model_name="decoder")
        req.inputs.add(name="z", datatype="FP32", shape=[1, latent_dim])
        req.raw_input_contents.append(z.tobytes())
        return req.SerializeToString()
    if protocol == "http-v1":
        body, path, extra = json.dumps({"n": 1}).encode(), "/v1/sample", ""
    else:
        head = json.dumps(
            {
                "inputs": [
                    {
                        "name": "z",
                        "datatype": "FP32",
                        "shape": [1, latent_dim],
                        "parameters": {"binary_data_size": z.nbytes},
                    }
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        body, path = head + z.tobytes(), "/v2/models/decoder/infer"
        extra = f"Inference-Header-Content-Length: {len(head)}\r\n"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


class HttpClient:
    """One keep-alive connection sending a fixed request and reading the answer by Content-Length."""

    def __init__(self, port: int, payload: bytes):
        self.port, self.payload, self.sock = port, payload, None

    def call(self) -> bool:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = self.sock
        s.sendall(self.payload)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            rest += chunk
        if b"connection: close" in head.lower():
            s.close()
            self.sock = None
        return head[9:12] == b"200"


class GrpcClient:
    def __init__(self, port: int, payload: bytes):
        import grpc

        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.payload = payload
        self.rpc = self.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

    def call(self) -> bool:
        return bool(self.rpc(self.payload, timeout=30))


def client_process(protocol: str, port: int, payload: bytes, threads: int, t0: float, t1: float, out) -> None:
    """`threads` closed-loop clients; each request that starts in [t0, t1) is counted."""
    lat: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads

    def loop(i: int) -> None:
        c = GrpcClient(port, payload) if protocol == "grpc" else HttpClient(port, payload)
        while (now := time.time()) < t1:
            s = time.perf_counter()
            try:
                ok = c.call()
            except Exception:  # noqa: BLE001 - counted, and the client reconnects
                ok = False
                if isinstance(c, HttpClient) and c.sock is not None:
                    c.sock.close()
                    c.sock = None
            if now >= t0:
                if ok:
                    lat[i].append(time.perf_counter() - s)
                else:
                    errors[i] += 1

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(([x for lt in lat for x in lt], sum(errors)))


# --- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    return int(head[9:12]), body


def start_server(
    art: Path, backend: str, env: dict[str, str]
) -> tuple[subprocess.Popen, int, int, float, float]:
    """`vaegan serve` in its own process: (process, HTTP port, gRPC port, seconds to ready, to the
    first answered request)."""
    port, gport = free_port(), free_port()
    cmd = [sys.executable, "-m", "vaegan", "serve", str(art), "--port", str(port), "--grpc-port", str(gport)]
    t = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "--backend", backend, "--no-ui"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    ready = first = None
    while ready is None:
        if proc.poll() is not None:
            raise RuntimeError(f"vaegan serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if http_get(port, "/v2/health/ready")[0] == 200:
                ready = time.perf_counter() - t
        except OSError:
            time.sleep(0.005)
    c = HttpClient(port, request_bytes("http-v2", port, latent_dim(art)))
    if not c.call():
        raise RuntimeError("the first request failed")
    first = time.perf_counter() - t
    return proc, port, gport, ready, first


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def latent_dim(art: Path) -> int:
    return int(json.loads((art / "manifest.json").read_text())["model"]["latent_dim"])


def server_stats(port: int, model: str) -> dict[str, Any]:
    code, body = http_get(port, f"/v2/models/{model}/stats")
    assert code == 200, body
    return json.loads(body)["model_stats"][0]


def stats_delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Mean ms per request of each part, between two reads of the server's statistics."""
    n = b["inference_stats"]["success"]["count"] - a["inference_stats"]["success"]["count"]
    out = {"requests": n}
    for part in ("success", *PARTS):
        ns = b["inference_stats"][part]["ns"] - a["inference_stats"][part]["ns"]
        out[part + "_ms"] = ns / max(n, 1) / 1e6
    batches = b["execution_count"] - a["execution_count"]
    out["mean_batch"] = (b["inference_count"] - a["inference_count"]) / max(batches, 1)
    return out


def run_case(
    protocol: str, port: int, gport: int, art: Path, clients: int, seconds: float, warmup: float
) -> dict:
    payload = request_bytes(protocol, gport if protocol == "grpc" else port, latent_dim(art))
    procs_n = min(clients, MAX_CLIENT_PROCS)
    per = [clients // procs_n + (1 if i < clients % procs_n else 0) for i in range(procs_n)]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t0 = time.time() + 1.5 + warmup  # after the processes have started and warmed up
    t1 = t0 + seconds
    model = "sample" if protocol == "http-v1" else "decoder"
    ps = [
        ctx.Process(
            target=client_process,
            args=(protocol, gport if protocol == "grpc" else port, payload, k, t0, t1, q),
        )
        for k in per
    ]
    for p in ps:
        p.start()
    time.sleep(max(0.0, t0 - time.time()))
    before = server_stats(port, model)
    time.sleep(max(0.0, t1 - time.time()))
    after = server_stats(port, model)
    lat, errors = [], 0
    for _ in ps:
        got, e = q.get(timeout=120)
        lat += got
        errors += e
    for p in ps:
        p.join()
    ms = np.array(lat) * 1e3
    server = stats_delta(before, after)
    row = {
        "protocol": protocol,
        "concurrency": clients,
        "client_processes": procs_n,
        "requests": len(lat),
        "errors": errors,
        "req_per_s": len(lat) / seconds,
        "images_per_s": len(lat) / seconds,  # one image per request
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "server": server,
    }
    row["server"]["outside_ms"] = row["mean_ms"] - server["success_ms"]
    return row


# --- the engine alone, and cold starts ---------------------------------------------------------


def engine_rates(art: Path, backend: str, precision: str, seconds: float) -> dict[str, float]:
    """The engine's images/s at batch 1 and 64 through `Sampler.decode`, nothing else running."""
    from vaegan.bench.measure import time_fn
    from vaegan.runtime import Sampler

    s = Sampler.load(art, backend=backend, precision=precision)
    out = {}
    for b in (1, 64):
        z = s.latents(b, seed=0)
        ms = time_fn(lambda z=z: s.decode(z), warmup=20, iters=0, seconds=seconds)
        out[f"batch{b}_images_per_s"] = b / (float(np.median(ms)) / 1e3)
    s.close()
    return out


def cold_starts(art: Path, backend: str, env: dict[str, str]) -> list[dict[str, float]]:
    out = []
    for attempt in ("first start", "second start"):
        proc, _, _, ready, first = start_server(art, backend, env)
        stop(proc)
        out.append({"start": attempt, "ready_s": ready, "first_answer_s": first})
    return out


def serve_info(port: int) -> dict[str, Any]:
    code, body = http_get(port, "/healthz")
    return json.loads(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("art_dirs", nargs="+", type=Path)
    ap.add_argument(
        "--backend", default="auto", help="what the server runs (default: what `vaegan serve` picks)"
    )
    ap.add_argument("--cold-backends", default="ort,openvino", help="engines whose cold start is measured")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "bench")
    a = ap.parse_args()
    from benchmarks import docs
    from vaegan.bench.measure import provenance
    from vaegan.core.io import write_json

    for art in a.art_dirs:
        env = dict(os.environ, VAEGAN_CACHE=str(ROOT / "build" / "serve-bench-cache" / art.name))
        cold = {b: cold_starts(art, b, env) for b in a.cold_backends.split(",") if b}
        proc, port, gport, _, _ = start_server(art, a.backend, env)
        try:
            info = serve_info(port)
            rows = []
            for protocol in a.protocols.split(","):
                for c in map(int, a.concurrency.split(",")):
                    r = run_case(protocol, port, gport, art, c, a.seconds, a.warmup)
                    rows.append(r)
                    print(
                        f"{art.name} {protocol:8s} c={c:<3d} {r['req_per_s']:8.0f} req/s  p50 {r['p50_ms']:6.2f} "
                        f"p99 {r['p99_ms']:6.2f} ms  batch {r['server']['mean_batch']:.1f}  errors {r['errors']}",
                        flush=True,
                    )
        finally:
            stop(proc)
        engine = engine_rates(art, info["backend"], info["precision"], seconds=2.0)
        out = a.out_dir / f"serve_{art.name}.json"
        write_json(
            out,
            {
                "producer": "benchmarks/serve_bench.py:RESULTS_SCHEMA",
                "schema_version": RESULTS_SCHEMA,
                "provenance": provenance(),
                "artifact_dir": str(art),
                "model": info["model"],
                "backend": info["backend"],
                "precision": info["precision"],
                "engine": engine,
                "seconds": a.seconds,
                "rows": rows,
                "cold_start": cold,
            },
        )
        print(f"-> {out}")
    docs.main([])


# --- the tables docs/benchmarks.md renders (benchmarks/docs.py) ---------------------------------


def _name(d: dict[str, Any]) -> str:
    m = d["model"]
    return f"{Path(d['artifact_dir']).name} ({m['image_size']}x{m['image_size']}x{m['channels']}, {d['backend']} {d['precision']})"


def table(d: dict[str, Any]) -> str:
    e = d["engine"]
    lines = [
        f"**{_name(d)}**: the engine alone: {e['batch1_images_per_s']:.0f} images/s at batch 1, "
        f"{e['batch64_images_per_s']:.0f} at batch 64.",
        "",
        "| protocol | clients | req/s | vs engine b1 | p50 ms | p90 ms | p99 ms | mean batch | server: read | queue | "
        "engine | answer | outside server |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in d["rows"]:
        s = r["server"]
        lines.append(
            f"| {r['protocol']} | {r['concurrency']} | {r['req_per_s']:.0f} | "
            f"{r['images_per_s'] / e['batch1_images_per_s']:.2f}x | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {s['mean_batch']:.1f} | "
            + " | ".join(f"{s[p + '_ms']:.3f}" for p in PARTS)
            + f" | {s['outside_ms']:.3f} |"
        )
    errors = sum(r["errors"] for r in d["rows"])
    lines.append("")
    lines.append(
        f"Server columns: mean ms per request (Triton's statistics extension). Failed requests: {errors}."
    )
    return "\n".join(lines)


def ratio_lines(*ds: dict[str, Any]) -> list[str]:
    """The serving targets, each against the run that measured it."""
    lines = ["| model | target | measured | |", "|---|---|---:|---|"]
    for d in ds:
        e = d["engine"]
        rows = {(r["protocol"], r["concurrency"]): r for r in d["rows"]}
        name = Path(d["artifact_dir"]).name
        for proto, target in (("grpc", 0.40), ("http-v2", 0.35)):
            r = rows.get((proto, 1))
            if r:
                v = r["images_per_s"] / e["batch1_images_per_s"]
                lines.append(
                    f"| {name} | {proto}, 1 client: >= {target:.2f}x the engine's batch-1 images/s | {v:.2f}x | "
                    f"{'met' if v >= target else '**missed**'} |"
                )
        for proto in ("grpc", "http-v2"):
            r = rows.get((proto, 64))
            if r:
                v = r["images_per_s"] / e["batch64_images_per_s"]
                tail = r["p99_ms"] / r["p50_ms"]
                ok = v >= 0.5 and tail <= 3
                lines.append(
                    f"| {name} | {proto}, 64 clients: >= 0.50x the engine's batch-64 images/s, p99 <= 3x p50 | "
                    f"{v:.2f}x, p99 {tail:.1f}x p50 | {'met' if ok else '**missed**'} |"
                )
    return lines


def cold_table(*ds: dict[str, Any]) -> str:
    lines = ["| model | engine | start | to ready (s) | to first answer (s) |", "|---|---|---|---:|---:|"]
    for d in ds:
        for engine, runs in d["cold_start"].items():
            for r in runs:
                lines.append(
                    f"| {Path(d['artifact_dir']).name} | {engine} | {r['start']} | {r['ready_s']:.2f} | "
                    f"{r['first_answer_s']:.2f} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

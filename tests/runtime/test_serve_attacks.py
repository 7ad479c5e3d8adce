"""The second attack round on `vaegan serve`, each case against a real server process on loopback,
over HTTP (/v1 and /v2) and gRPC: one client's bad input never fails another's request, made-up
model names cannot grow memory, idle sockets cannot lock out probes, odd fields are 400s, the token
guards every route but health. Loops are bounded in count and time."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from tests.runtime.live import free_port, start_serve  # noqa: E402

TOKEN = "attack-round-two-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GRPC_AUTH = {"authorization": f"Bearer {TOKEN}"}


def _serve(art_dir, log_path, *args):
    grpc_port = free_port()
    log = open(log_path, "w")  # noqa: SIM115 - a file, not a pipe: a chatty server never blocks on its log
    proc, url = start_serve(art_dir, "--grpc-port", str(grpc_port), *args, stderr=log)
    return proc, url, f"127.0.0.1:{grpc_port}", log


@pytest.fixture(scope="module")
def server(art_dir, tmp_path_factory):
    """An open server that merges requests (a 5 ms delay), as a busy edge box does."""
    log_path = tmp_path_factory.mktemp("serve") / "stderr.log"
    proc, url, grpc_url, log = _serve(
        art_dir, log_path, "--max-delay-ms", "5", "--max-batch", "16", "--max-queue", "4096"
    )
    yield url, grpc_url, log_path
    proc.kill()
    proc.wait()
    log.close()


@pytest.fixture(scope="module")
def guarded(art_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("serve") / "stderr.log"
    proc, url, grpc_url, log = _serve(art_dir, log_path, "--token", TOKEN)
    yield url, grpc_url
    proc.kill()
    proc.wait()
    log.close()


def _v2_body(z: np.ndarray) -> tuple[bytes, dict]:
    raw = z.astype("<f4").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "z",
                    "datatype": "FP32",
                    "shape": list(z.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


@pytest.mark.slow
@pytest.mark.reliability("round2", "NaN from some clients fails no valid request (HTTP v1, v2, gRPC)")
def test_nan_requests_fail_only_themselves(server, art_dir):
    url, grpc_url, _ = server
    from vaegan.core.manifest import Manifest

    zdim = Manifest.load(art_dir).latent_dim
    bad = np.full((2, zdim), np.nan, np.float32)
    good = np.zeros((2, zdim), np.float32)
    stop = time.monotonic() + 8
    bad_codes: list[int] = []

    def poison() -> None:
        body, headers = _v2_body(bad)
        with httpx.Client(timeout=30) as c:
            while time.monotonic() < stop:
                bad_codes.append(
                    c.post(f"{url}/v2/models/decoder/infer", content=body, headers=headers).status_code
                )

    def v1(_: int) -> int:
        return httpx.post(f"{url}/v1/sample", json={"n": 2, "format": "npy"}, timeout=30).status_code

    def v2(_: int) -> int:
        body, headers = _v2_body(good)
        return httpx.post(
            f"{url}/v2/models/decoder/infer", content=body, headers=headers, timeout=30
        ).status_code

    client = grpcclient.InferenceServerClient(grpc_url)

    def grpc_call(_: int) -> str:
        inp = grpcclient.InferInput("z", list(good.shape), "FP32")
        inp.set_data_from_numpy(good)
        try:
            client.infer("decoder", [inp])
            return "OK"
        except InferenceServerException as e:
            return e.message()

    with ThreadPoolExecutor(10) as pool:
        poisoners = [pool.submit(poison) for _ in range(4)]
        results = {
            kind: list(pool.map(fn, range(60))) for kind, fn in (("v1", v1), ("v2", v2), ("grpc", grpc_call))
        }
        for p in poisoners:
            p.result()
    assert results["v1"] == [200] * 60, results["v1"]
    assert results["v2"] == [200] * 60, results["v2"]
    assert results["grpc"] == ["OK"] * 60, results["grpc"]
    assert bad_codes and set(bad_codes) == {400}


@pytest.mark.reliability("round2", "made-up model names leave /metrics and memory flat")
def test_unknown_model_names_share_one_metric_label(server):
    url, grpc_url, _ = server
    names = [f"m{i:05d}-" + "x" * 40 for i in range(400)]
    with httpx.Client(timeout=30) as c:
        size0 = len(c.get(f"{url}/metrics").text)
        for n in names:
            assert c.post(f"{url}/v2/models/{n}/infer", content=b"{}").status_code == 404
    client = grpcclient.InferenceServerClient(grpc_url)
    inp = grpcclient.InferInput("z", [1, 8], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 8), np.float32))
    for i in range(100):
        with pytest.raises(InferenceServerException):
            client.infer("g" * 2000 + str(i), [inp])
    text = httpx.get(f"{url}/metrics", timeout=30).text
    assert not any(n in text for n in names[:5]) and "g" * 100 not in text
    assert 'model="_unknown"' in text
    assert len(text) - size0 < 2000, len(text) - size0  # two new label sets, not 500


@pytest.mark.slow
@pytest.mark.reliability("round2", "probes answered while idle sockets hold the connection cap")
def test_probes_get_in_while_idle_sockets_hold_the_connection_cap(art_dir, tmp_path):
    proc, url, _, log = _serve(art_dir, tmp_path / "log", "--max-connections", "60", "--header-timeout", "30")
    host, port = url.removeprefix("http://").split(":")
    stop = threading.Event()
    socks: list[socket.socket] = []

    def connect() -> socket.socket:
        s = socket.create_connection((host, int(port)), timeout=5)
        s.setblocking(False)
        return s

    def hold() -> None:  # 90 idle sockets that reconnect as soon as the server closes one
        socks.extend(connect() for _ in range(90))
        while not stop.is_set():
            for i, s in enumerate(socks):
                try:
                    if s.recv(1) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    continue
                except OSError:
                    s.close()
                    with contextlib.suppress(OSError):
                        socks[i] = connect()
            time.sleep(0.01)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        time.sleep(1.5)
        codes = []
        for _ in range(15):
            for method, path, body in (("GET", "/healthz", None), ("POST", "/v1/sample", {"n": 1})):
                try:
                    codes.append(httpx.request(method, f"{url}{path}", json=body, timeout=5).status_code)
                except httpx.HTTPError as e:
                    codes.append(type(e).__name__)
    finally:
        stop.set()
        holder.join(10)
        for s in socks:
            s.close()
        proc.kill()
        proc.wait()
        log.close()
    assert [c for c in codes if c != 200] == [], codes


@pytest.mark.parametrize(
    "where, value", [("", [1]), ("", "x"), ("inputs[0].", [2]), ("outputs[0].", "binary")]
)
@pytest.mark.reliability("round2", "a non-object parameters is a 400 naming the field")
def test_non_object_parameters_are_400_naming_the_field(server, art_dir, where, value):
    from vaegan.core.manifest import Manifest

    url, _, log_path = server
    zdim = Manifest.load(art_dir).latent_dim
    tensor = {"name": "z", "datatype": "FP32", "shape": [1, zdim], "data": [0.0] * zdim}
    body: dict = {"inputs": [tensor], "outputs": [{"name": "images"}]}
    {"": body, "inputs[0].": tensor, "outputs[0].": body["outputs"][0]}[where]["parameters"] = value
    r = httpx.post(f"{url}/v2/models/decoder/infer", json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == f"{where}parameters must be a JSON object, got {type(value).__name__}"
    assert "AttributeError" not in log_path.read_text()


@pytest.mark.reliability("round2", "clients that leave mid-body: counted, no tracebacks")
def test_a_client_leaving_mid_body_is_counted_without_a_traceback(server):
    url, _, log_path = server
    host, port = url.removeprefix("http://").split(":")
    for path in ("/v1/sample", "/v2/models/decoder/infer"):
        for _ in range(40):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(f'POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{"n"'.encode())
            s.close()
    time.sleep(1.0)
    log = log_path.read_text()
    assert "Traceback" not in log and "internal error" not in log
    assert log.count("closed its connection before its request was read") <= 1  # rate-limited
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert 'vaegan_requests_total{endpoint="sample",status="499"}' in metrics
    assert 'status="500"' not in metrics


@pytest.mark.reliability("round2", "float data for a UINT8 input is a 400")
def test_float_data_for_a_uint8_input_is_refused(server, art_dir):
    from vaegan.core.manifest import Manifest

    url, _, _ = server
    h, w, c = Manifest.load(art_dir).image_shape
    for data, needle in (([0.5] * (h * w * c), "whole numbers"), ([300] * (h * w * c), "0..255")):
        body = {"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1, h, w, c], "data": data}]}
        r = httpx.post(f"{url}/v2/models/encoder/infer", json=body, timeout=30)
        assert r.status_code == 400 and needle in r.json()["error"], r.text


@pytest.mark.reliability("round2", "a huge integer temperature is a 400")
def test_a_huge_integer_temperature_is_400(server):
    url, _, _ = server
    r = httpx.post(f"{url}/v1/sample", content='{"n": 1, "temperature": 1' + "0" * 400 + "}", timeout=30)
    assert r.status_code == 400 and "temperature must be a number" in r.json()["error"], r.text


HTTP_ROUTES = [  # (method, path, open under --token)
    ("GET", "/healthz", True),
    ("GET", "/v2/health/live", True),
    ("GET", "/v2/health/ready", True),
    ("GET", "/v2/models/decoder/ready", True),
    ("GET", "/v2/models/decoder/versions/1/ready", True),
    ("GET", "/v2", False),
    ("GET", "/v2/models/decoder", False),
    ("GET", "/v2/models/encoder/versions/1", False),
    ("POST", "/v2/models/decoder/infer", False),
    ("POST", "/v2/models/nosuchmodel/infer", False),
    ("POST", "/v1/sample", False),
    ("POST", "/v1/reconstruct", False),
    ("GET", "/metrics", False),
]


@pytest.mark.parametrize("method, path, is_open", HTTP_ROUTES)
@pytest.mark.reliability("round2", "every HTTP route with and without the token")
def test_every_http_route_with_and_without_the_token(guarded, method, path, is_open):
    url, _ = guarded
    without = httpx.request(method, f"{url}{path}", timeout=30)
    wrong = httpx.request(method, f"{url}{path}", headers={"Authorization": "Bearer nope"}, timeout=30)
    with_token = httpx.request(method, f"{url}{path}", headers=AUTH, timeout=30)
    if is_open:
        assert without.status_code == 200 and wrong.status_code == 200
    else:
        assert without.status_code == 401 and wrong.status_code == 401, (without.text, wrong.text)
        assert without.headers["www-authenticate"] == "Bearer"
        assert "vaegan" not in without.text  # neither the version nor the model leaks
    assert with_token.status_code != 401
    if path == "/healthz":  # details only to those with the token
        assert set(without.json()) == {"status"} and "model" in with_token.json()


@pytest.mark.reliability("round2", "every gRPC call with and without the token")
def test_every_grpc_call_with_and_without_the_token(guarded):
    _, grpc_url = guarded
    c = grpcclient.InferenceServerClient(grpc_url)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("decoder")
    z = np.zeros((1, 8), np.float32)

    def infer(headers=None):
        inp = grpcclient.InferInput("z", [1, z.shape[1]], "FP32")
        inp.set_data_from_numpy(z)
        return c.infer("decoder", [inp], headers=headers)

    guarded_calls = (
        lambda h: c.get_server_metadata(headers=h),
        lambda h: c.get_model_metadata("decoder", headers=h),
        lambda h: c.get_model_metadata("nosuchmodel", headers=h),
        infer,
    )
    for call in guarded_calls:
        for headers in (None, {"authorization": "Bearer nope"}):
            with pytest.raises(InferenceServerException) as e:
                call(headers)
            assert e.value.status() == "StatusCode.UNAUTHENTICATED", e.value
    assert c.get_server_metadata(headers=GRPC_AUTH).name == "vaegan"
    assert c.get_model_metadata("decoder", headers=GRPC_AUTH).name == "decoder"

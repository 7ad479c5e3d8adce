"""One error path per protocol (third attack round, issue 29): whatever the engine raises after a
request passed validation is a server error on HTTP /v1, /v2 and gRPC alike, answered with a request
id and never with the engine's own text; only the request's own validation is a client error. The
protocol's malformed-request cases are refused naming the field. A real uvicorn server and a real
gRPC server on loopback over a real ONNX Runtime decoder, with a fault switched into the engine."""

from __future__ import annotations

import io
import json
import socket

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from tests.runtime.live import LiveServer  # noqa: E402
from vaegan.runtime.backends import Runner  # noqa: E402

SECRET = "/secret/models/decoder.fp32.onnx"


class FaultyEngine(Runner):
    """The real decoder runner, raising `fault` (when set) as an engine that breaks mid-request does."""

    def __init__(self, inner: Runner):
        self.inner = inner
        self.fault: BaseException | None = None
        for name in ("info", "input_name", "output_names", "graph_inputs", "graph_outputs"):
            setattr(self, name, getattr(inner, name))

    def run(self, x):
        if self.fault is not None:
            raise self.fault
        return self.inner.run(x)

    def run_into(self, x, outs):
        if self.fault is not None:
            raise self.fault
        self.inner.run_into(x, outs)


@pytest.fixture(scope="module")
def live(art_dir):
    from vaegan.config import ServeConfig
    from vaegan.runtime import Sampler, grpc_oip
    from vaegan.runtime.server import create_app
    from vaegan.runtime.serving import ServingCore

    sampler = Sampler.load(art_dir, backend="ort")
    engine = FaultyEngine(sampler.decoder_runner)
    sampler.decoder_runner = engine
    core = ServingCore(sampler, ServeConfig(max_delay_ms=0))
    grpc_server, port = grpc_oip.start(core, "127.0.0.1", 0)
    with LiveServer(create_app(core)) as url:
        yield url, f"127.0.0.1:{port}", engine
    grpc_server.stop(0)


def _v2(z: np.ndarray) -> dict:
    return {"inputs": [{"name": "z", "datatype": "FP32", "shape": list(z.shape), "data": z.ravel().tolist()}]}


FAULTS = {
    "RuntimeError": RuntimeError(f"CUDA failure 700 in {SECRET}"),
    "KeyError": KeyError(SECRET),
    "MemoryError": MemoryError(f"cannot allocate 4 GB for {SECRET}"),
    "ValueError": ValueError(f"could not broadcast {SECRET} input array from shape (2,8) into (3,8)"),
}


@pytest.mark.reliability("round3", "an engine error is a 500 / INTERNAL with a request id, never its text")
@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_engine_error_is_a_server_error_on_every_protocol(live, fault, caplog):
    url, grpc_url, engine = live
    z = np.zeros((2, 8), np.float32)
    engine.fault = FAULTS[fault]
    try:
        answers = [
            httpx.post(f"{url}/v1/sample", json={"n": 2, "seed": 0}, timeout=30),
            httpx.post(f"{url}/v2/models/decoder/infer", json=_v2(z), timeout=30),
        ]
        with grpcclient.InferenceServerClient(grpc_url) as c:
            inp = grpcclient.InferInput("z", [2, 8], "FP32")
            inp.set_data_from_numpy(z)
            with pytest.raises(InferenceServerException) as e:
                c.infer("decoder", [inp])
    finally:
        engine.fault = None
    for r in answers:
        assert r.status_code == 500, r.text
        msg = r.json()["error"]
        assert msg == f"internal error (request id {r.headers['x-request-id']})"
        assert "secret" not in r.text and fault not in r.text
    assert e.value.status() == "StatusCode.INTERNAL"
    assert "secret" not in e.value.message() and "internal error (request id" in e.value.message()
    # the engine's text is in the server's log, under the id the client got
    rid = answers[0].headers["x-request-id"]
    assert any(rid in rec.getMessage() and rec.exc_info for rec in caplog.records)
    # and the server still answers
    assert httpx.post(f"{url}/v1/sample", json={"n": 1, "seed": 0}, timeout=30).status_code == 200


@pytest.mark.reliability("round3", "two raw_input_contents for one gRPC input")
def test_grpc_two_raw_contents_for_one_input_is_refused(live):
    import grpc
    from tritonclient.grpc import service_pb2_grpc as pbg

    _, grpc_url, _ = live
    z = np.zeros((1, 8), "<f4").tobytes()
    req = pb.ModelInferRequest(model_name="decoder")
    req.inputs.add(name="z", datatype="FP32", shape=[1, 8])
    req.raw_input_contents.extend([z, z])
    with grpc.insecure_channel(grpc_url) as ch, pytest.raises(grpc.RpcError) as e:
        pbg.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents has 2 entries" in e.value.details()


@pytest.mark.reliability("round3", "a shape whose element count overflows int64")
def test_a_shape_that_overflows_is_refused_by_the_shape_check(live):
    import grpc
    from tritonclient.grpc import service_pb2_grpc as pbg

    url, grpc_url, _ = live
    req = pb.ModelInferRequest(model_name="decoder")
    req.inputs.add(name="z", datatype="FP32", shape=[2**62, 8])
    req.raw_input_contents.append(b"\0" * 32)
    with grpc.insecure_channel(grpc_url) as ch, pytest.raises(grpc.RpcError) as e:
        pbg.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "elements, over" in e.value.details()
    body = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [2**62, 8], "data": [0.0] * 8}]}
    r = httpx.post(f"{url}/v2/models/decoder/infer", json=body, timeout=30)
    assert r.status_code == 400 and "elements, over" in r.json()["error"]


@pytest.mark.reliability("round3", "a negative Content-Length")
def test_a_negative_content_length_is_a_json_400(live):
    url, _, _ = live
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/sample HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head.lower()
    assert "malformed HTTP request" in json.loads(body)["error"]


@pytest.mark.reliability("round3", "/v1/sample of one class")
def test_v1_sample_draws_one_class(live):
    url, _, _ = live
    r = httpx.post(f"{url}/v1/sample", json={"n": 4, "seed": 0, "class": "3", "format": "npy"}, timeout=30)
    assert r.status_code == 200, r.text
    other = httpx.post(f"{url}/v1/sample", json={"n": 4, "seed": 0, "format": "npy"}, timeout=30)
    assert r.content != other.content
    for bad, says in (("Z", "no class 'Z'"), (3, "class must be a string")):
        r = httpx.post(f"{url}/v1/sample", json={"n": 1, "class": bad}, timeout=30)
        assert r.status_code == 400 and says in r.json()["error"], r.text


@pytest.mark.reliability("round3", "the OIP sample model draws one class (HTTP v2 and gRPC)")
def test_oip_sample_model_takes_a_class_parameter(live):
    url, grpc_url, _ = live
    body = {"inputs": [{"name": "n", "datatype": "INT32", "shape": [1], "data": [4]}]}
    r = httpx.post(
        f"{url}/v2/models/sample/infer", json={**body, "parameters": {"seed": 0, "class": "3"}}, timeout=30
    )
    assert r.status_code == 200, r.text
    images = np.array(r.json()["outputs"][0]["data"], np.uint8).reshape(r.json()["outputs"][0]["shape"])
    v1 = httpx.post(f"{url}/v1/sample", json={"n": 4, "seed": 0, "class": "3", "format": "npy"}, timeout=30)
    np.testing.assert_array_equal(images, np.load(io.BytesIO(v1.content)))  # the same draw as /v1/sample
    with grpcclient.InferenceServerClient(grpc_url) as c:
        inp = grpcclient.InferInput("n", [1], "INT32")
        inp.set_data_from_numpy(np.array([4], np.int32))
        out = c.infer("sample", [inp], parameters={"seed": 0, "class": "3"}).as_numpy("images")
        np.testing.assert_array_equal(out, images)
        with pytest.raises(InferenceServerException) as e:
            c.infer("sample", [inp], parameters={"class": "Z"})
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "no class 'Z'" in e.value.message()
    for params, says in (
        ({"class": 3}, "class must be a string"),
        ({"colour": "red"}, "unknown parameters: colour"),
    ):
        r = httpx.post(f"{url}/v2/models/sample/infer", json={**body, "parameters": params}, timeout=30)
        assert r.status_code == 400 and says in r.json()["error"], r.text


def test_the_page_at_root_is_static_and_offline(live, art_dir):
    import re

    from vaegan.config import ServeConfig
    from vaegan.runtime import Sampler
    from vaegan.runtime.server import create_app
    from vaegan.runtime.serving import ServingCore

    url, _, _ = live
    r = httpx.get(f"{url}/", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"(src|href)=\"https?://", r.text) and "/v1/sample" in r.text  # no CDN, its own API
    with (
        Sampler.load(art_dir, backend="ort") as s,
        LiveServer(create_app(ServingCore(s, ServeConfig(ui=False)))) as off,
    ):
        assert httpx.get(f"{off}/", timeout=30).status_code == 404  # --no-ui


def test_v1_sample_between_two_seeds(live):
    url, _, _ = live
    r = httpx.post(f"{url}/v1/sample", json={"n": 5, "between": [1, 2], "format": "npy"}, timeout=30)
    assert r.status_code == 200, r.text
    strip = np.load(io.BytesIO(r.content))
    ends = np.load(
        io.BytesIO(
            httpx.post(f"{url}/v1/sample", json={"n": 1, "seed": 1, "format": "npy"}, timeout=30).content
        )
    )
    assert np.abs(strip[0].astype(int) - ends[0]).max() <= 1  # starts at seed 1's sample
    r = httpx.post(f"{url}/v1/sample", json={"n": 5, "between": [1]}, timeout=30)
    assert r.status_code == 400 and "two seeds" in r.json()["error"]

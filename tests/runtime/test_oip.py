"""The Open Inference Protocol (KServe v2) of `vaegan serve`, called with Triton's own clients
(tritonclient over HTTP and gRPC) on loopback: the same client code that talks to Triton serving the
exported model repository."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("starlette")
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from tests.runtime.live import LiveServer  # noqa: E402

TRITON_TYPES = {"TYPE_FP32": "FP32", "TYPE_UINT8": "UINT8", "TYPE_FP16": "FP16"}


@pytest.fixture(scope="module")
def servers(art_dir):
    """(http url, grpc url, sampler): one app, its batchers shared by both protocols."""
    from vaegan.config import ServeConfig
    from vaegan.runtime import Sampler
    from vaegan.runtime.grpc_oip import start
    from vaegan.runtime.server import ServingCore, create_app

    cfg = ServeConfig(max_batch=16, max_queue=64, max_n=64)
    with Sampler.load(art_dir, backend="ort") as s:
        core = ServingCore(s, cfg)
        app = create_app(core)
        grpc_server, port = start(core, "127.0.0.1", 0)
        with LiveServer(app, cfg) as url:
            yield url.removeprefix("http://"), f"127.0.0.1:{port}", s
        grpc_server.stop(0)


@pytest.fixture(params=["http", "grpc"])
def client(request, servers):
    http_url, grpc_url, _ = servers
    if request.param == "http":
        return httpclient, httpclient.InferenceServerClient(http_url)
    return grpcclient, grpcclient.InferenceServerClient(grpc_url)


def test_live_ready_and_model_ready(client):
    _, c = client
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("decoder") and c.is_model_ready("encoder") and c.is_model_ready("decoder", "1")
    try:  # one version only: http answers False, grpc raises NOT_FOUND
        assert not c.is_model_ready("decoder", "2")
    except InferenceServerException as e:
        assert "version 1 only" in e.message()
    try:
        assert not c.is_model_ready("mystery")
    except InferenceServerException as e:
        assert "no model 'mystery'" in e.message()


def _config(art_dir, name):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(
        (art_dir / "triton" / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )


@pytest.mark.parametrize("name", ["decoder", "encoder"])
def test_model_metadata_matches_the_exported_triton_config(client, art_dir, name):
    from tritonclient.grpc import model_config_pb2

    module, c = client
    md = c.get_model_metadata(name) if module is httpclient else c.get_model_metadata(name, as_json=True)
    cfg = _config(art_dir, name)

    def tensors(specs):
        return [
            (t.name, TRITON_TYPES[model_config_pb2.DataType.Name(t.data_type)], [-1, *t.dims]) for t in specs
        ]

    got_in = [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in md["inputs"]]
    got_out = [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in md["outputs"]]
    assert got_in == tensors(cfg.input) and got_out == tensors(cfg.output)
    assert md["name"] == name and "1" in md["versions"]


def _infer_decoder(module, c, z, binary):
    inp = module.InferInput("z", list(z.shape), "FP32")
    if module is httpclient:
        inp.set_data_from_numpy(z, binary_data=binary)
        out = [module.InferRequestedOutput("images", binary_data=binary)]
    else:
        inp.set_data_from_numpy(z)
        out = [module.InferRequestedOutput("images")]
    return c.infer("decoder", [inp], outputs=out).as_numpy("images")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_decoder_inference_is_bitwise_sampler_decode(client, servers, binary):
    module, c = client
    sampler = servers[2]
    z = sampler.latents(20, seed=3)  # more than one batch of 16: chunked by the batcher
    got = _infer_decoder(module, c, z, binary)
    assert got.dtype == np.uint8 and np.array_equal(got, sampler.decode(z))


def test_encoder_inference_equals_sampler_encode(client, servers):
    module, c = client
    sampler = servers[2]
    images = sampler.sample(5, seed=1)
    inp = module.InferInput("images", list(images.shape), "UINT8")
    inp.set_data_from_numpy(images)
    res = c.infer("encoder", [inp])
    mu, logvar = sampler.encode(images)
    assert np.array_equal(res.as_numpy("mu"), mu) and np.array_equal(res.as_numpy("logvar"), logvar)


@pytest.mark.parametrize(
    "shape, dtype, needle",
    [([2, 5], "FP32", "must have shape [-1, 8]"), ([2, 8], "UINT8", "must be FP32")],
)
def test_a_wrong_shape_or_dtype_gets_the_right_status_and_says_what_was_expected(
    client, shape, dtype, needle
):
    module, c = client
    x = np.zeros(shape, np.float32 if dtype == "FP32" else np.uint8)
    inp = module.InferInput("z", shape, dtype)
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        c.infer("decoder", [inp])
    status = str(e.value.status())
    assert status in ("400", "StatusCode.INVALID_ARGUMENT"), status
    assert needle in e.value.message()


def test_overload_is_503_or_unavailable_while_live_stays_up(servers):
    http_url, grpc_url, sampler = servers
    z = sampler.latents(64, seed=0)

    def one(proto):
        module = httpclient if proto == "http" else grpcclient
        c = module.InferenceServerClient(http_url if proto == "http" else grpc_url)
        inp = module.InferInput("z", list(z.shape), "FP32")
        inp.set_data_from_numpy(z)
        try:
            c.infer("decoder", [inp])
            return "ok"
        except InferenceServerException as e:
            return str(e.status())

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, ["http", "grpc"] * 24))
        live = httpclient.InferenceServerClient(http_url).is_server_live()
    assert live
    assert set(results) <= {"ok", "503", "StatusCode.UNAVAILABLE"}, set(results)
    assert "503" in results and "StatusCode.UNAVAILABLE" in results  # 48 x 64 rows over a 64-row queue


def test_metrics_count_per_protocol_and_model(servers, client):
    import httpx

    module, c = client
    sampler = servers[2]
    _infer_decoder(module, c, sampler.latents(1, seed=0), False)
    text = httpx.get(f"http://{servers[0]}/metrics").text
    proto = "http" if module is httpclient else "grpc"
    assert f'vaegan_infer_requests_total{{model="decoder",protocol="{proto}"' in text


def test_statistics_split_each_request_as_triton_clients_read_them(client, servers):
    """Triton's statistics extension, read with tritonclient's own get_inference_statistics: every
    answered request is counted once, and its parts (read, queue, engine, answer) fit in its total."""
    module, c = client
    _, _, s = servers

    def decoder_stats() -> dict:
        st = (
            c.get_inference_statistics("decoder")
            if module is httpclient
            else c.get_inference_statistics("decoder", as_json=True)
        )
        (one,) = st["model_stats"]
        assert one["name"] == "decoder"
        return one

    def count(st: dict, part: str) -> tuple[int, int]:
        p = st["inference_stats"][part]
        return int(p.get("count", 0)), int(p.get("ns", 0))

    before = decoder_stats()
    z = s.latents(3, seed=0)
    for _ in range(5):
        inp = module.InferInput("z", list(z.shape), "FP32")
        inp.set_data_from_numpy(z)
        c.infer("decoder", [inp])
    after = decoder_stats()
    n, total = (a - b for a, b in zip(count(after, "success"), count(before, "success"), strict=True))
    assert n == 5 and total > 0
    assert int(after["inference_count"]) - int(before["inference_count"]) == 15  # images, as Triton counts
    parts = 0
    for part in ("compute_input", "queue", "compute_infer", "compute_output"):
        k, ns = (a - b for a, b in zip(count(after, part), count(before, part), strict=True))
        assert k == 5, part
        parts += ns
    assert 0 < parts <= total * 1.01  # the parts are measured inside the request's own interval

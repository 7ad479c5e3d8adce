"""`vaegan serve`: the Sampler over HTTP (starlette + uvicorn), with micro-batching.

POST /v1/sample       JSON {"n", "seed", "temperature", "format": "png" | "npy"}
POST /v1/reconstruct  an image file as the body (PNG/JPEG/BMP) -> PNG of the reconstruction
GET  /healthz         model and backend, queue depth (always open, also with a token)
GET  /metrics         Prometheus text: requests, batch sizes, latency

Inference runs on the batchers' threads; the event loop only parses, waits and encodes. Admission is
counted in images: the decoder's queue takes at most --max-queue waiting images and serves small
requests first, uploaded images are decoded in their own bounded pool (--max-decoding), and PNG
encoding of answers runs apart from both, so a flood of large uploads cannot delay /v1/sample. A full
queue answers 503 with Retry-After; bad input answers 4xx with {"error": ...}. Connections that do not
send a request head in --header-timeout, bodies slower than --body-timeout and idle keep-alives are
closed, and at most --max-connections are open; nothing a client sends stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import io
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from vaegan.config import ServeConfig
from vaegan.core.errors import InputError, Overloaded, VaeganError
from vaegan.core.images import grid, to_pil
from vaegan.runtime import oip
from vaegan.runtime.batcher import BatcherClosed, MicroBatcher
from vaegan.runtime.sampler import Sampler

log = logging.getLogger(__name__)


def _metrics():
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    reg = CollectorRegistry()
    return reg, {
        "requests": Counter("vaegan_requests", "HTTP requests", ["endpoint", "status"], registry=reg),
        "latency": Histogram(
            "vaegan_request_seconds",
            "Request latency",
            ["endpoint"],
            registry=reg,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        ),
        "batch": Histogram(
            "vaegan_batch_size",
            "Rows per engine call",
            registry=reg,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        ),
        "batch_seconds": Histogram("vaegan_batch_seconds", "Engine time per batch", registry=reg),
        "samples": Counter("vaegan_samples", "Images generated", registry=reg),
        "queue": Gauge("vaegan_queue_depth", "Images waiting for the decoder", registry=reg),
        "infer": Counter(
            "vaegan_infer_requests",
            "Open Inference Protocol requests",
            ["protocol", "model", "status"],
            registry=reg,
        ),
    }


def create_app(sampler: Sampler, cfg: ServeConfig | None = None):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    cfg = dataclasses.replace(cfg or ServeConfig()).validate()
    if cfg.max_batch is None:
        cfg.max_batch = sampler.max_batch
    registry, m = _metrics()

    def on_batch(rows: int, seconds: float) -> None:
        m["batch"].observe(rows)
        m["batch_seconds"].observe(seconds)

    batcher = MicroBatcher(sampler.decode, cfg.max_batch, cfg.max_delay_ms, cfg.max_queue, on_batch)
    encoder = None
    if sampler.encoder_runner is not None:  # rows are mu and logvar side by side
        encoder = MicroBatcher(
            lambda x: np.concatenate(sampler.encode(x), axis=1),
            cfg.max_batch,
            cfg.max_delay_ms,
            cfg.max_queue,
        )
    served = oip.models(sampler, batcher.submit, encoder.submit if encoder else None)
    ready = threading.Event()
    ready.set()
    image_pool = ThreadPoolExecutor(1, thread_name_prefix="vaegan-image-decode")
    decoding = _Slots(cfg.max_decoding)
    token = cfg.token or os.environ.get("VAEGAN_TOKEN") or None

    def error(status: int, msg: str, **headers) -> JSONResponse:
        return JSONResponse({"error": msg}, status_code=status, headers=headers)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cfg.max_body_bytes):
            raise _TooLarge()

        async def read() -> bytes:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > cfg.max_body_bytes:
                    raise _TooLarge()
            return bytes(body)

        try:
            return await asyncio.wait_for(read(), cfg.body_timeout_s)
        except asyncio.TimeoutError:
            raise _SlowBody() from None

    async def run_batched(b: MicroBatcher, x: np.ndarray) -> np.ndarray:
        fut = b.submit(x)
        return await asyncio.wait_for(asyncio.wrap_future(fut), cfg.request_timeout_s)

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

    def endpoint(name: str):
        def wrap(handler):
            async def inner(request: Request) -> Response:
                t0 = time.perf_counter()
                try:
                    if not authorized(request):
                        resp = error(
                            401, "send Authorization: Bearer <token>", **{"WWW-Authenticate": "Bearer"}
                        )
                    else:
                        resp = await handler(request)
                except _TooLarge:
                    resp = error(413, f"request body over {cfg.max_body_bytes} bytes")
                except _SlowBody:
                    resp = error(408, f"request body not received within {cfg.body_timeout_s:g}s")
                except (Overloaded, BatcherClosed) as e:
                    resp = error(503, str(e), **{"Retry-After": "1"})
                except (InputError, ValueError) as e:
                    resp = error(400, str(e))
                except asyncio.TimeoutError:
                    resp = error(504, f"request took over {cfg.request_timeout_s:.0f}s")
                except VaeganError as e:
                    resp = error(500, str(e))
                except Exception as e:  # noqa: BLE001 - a request must never take the server down
                    log.exception("internal error on %s", name)
                    resp = error(500, f"internal error: {type(e).__name__}")
                m["requests"].labels(name, str(resp.status_code)).inc()
                m["latency"].labels(name).observe(time.perf_counter() - t0)
                return resp

            return inner

        return wrap

    @endpoint("sample")
    async def sample(request: Request) -> Response:
        body = await read_body(request)
        try:
            req = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"body is not valid JSON ({e.__class__.__name__})") from None
        except RecursionError:
            raise InputError("body is JSON nested too deeply") from None
        if not isinstance(req, dict):
            raise InputError('body must be a JSON object like {"n": 8, "seed": 0}')
        unknown = set(req) - {"n", "seed", "temperature", "format"}
        if unknown:
            raise InputError(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
        n, fmt = req.get("n", 1), req.get("format", "png")
        if fmt not in ("png", "npy"):
            raise InputError(f"format must be png or npy, got {fmt!r}")
        if isinstance(n, int) and not isinstance(n, bool) and n > cfg.max_n:
            raise InputError(f"n={n} is over this server's limit of {cfg.max_n} (--max-n)")
        seed = req.get("seed")
        z = sampler.latents(n, seed=seed, temperature=req.get("temperature", 1.0))
        images = await run_batched(batcher, z)
        m["samples"].inc(len(images))
        headers = {"X-Vaegan-N": str(len(images))}
        if seed is not None:
            headers["X-Vaegan-Seed"] = str(seed)
        if fmt == "npy":
            buf = io.BytesIO()
            np.save(buf, images, allow_pickle=False)
            return Response(buf.getvalue(), media_type="application/x-npy", headers=headers)
        return Response(await asyncio.to_thread(_png, images), media_type="image/png", headers=headers)

    @endpoint("reconstruct")
    async def reconstruct(request: Request) -> Response:
        body = await read_body(request)
        if not body:
            raise InputError("send an image file (PNG, JPEG or BMP) as the request body")
        with decoding.take():  # 503 when --max-decoding uploads are already in hand
            loop = asyncio.get_running_loop()
            image = await loop.run_in_executor(image_pool, _decode_image, body, sampler)
        if encoder is None:
            raise InputError("this artifact dir has no encoder: /v1/reconstruct needs one")
        mu = (await run_batched(encoder, image))[:, : sampler.latent_dim]
        rec = await run_batched(batcher, mu)
        m["samples"].inc(1)
        return Response(await asyncio.to_thread(_png, rec), media_type="image/png")

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "model": sampler.manifest.model,
                "backend": sampler.backend_info["backend"],
                "precision": sampler.backend_info["precision"],
                "queue": batcher.queued,
                "max_batch": cfg.max_batch,
                "max_n": cfg.max_n,
            }
        )

    @endpoint("metrics")
    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        m["queue"].set(batcher.queued)
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------- Open Inference Protocol (KServe v2) over HTTP
    async def v2_server(request: Request) -> Response:
        return JSONResponse(oip_server_metadata())

    async def v2_live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def v2_ready(request: Request) -> Response:
        return JSONResponse({"ready": ready.is_set()}, status_code=200 if ready.is_set() else 503)

    def v2_error(model: str, status: int, msg: str, **headers: str) -> JSONResponse:
        m["infer"].labels("http", model, str(status)).inc()
        return error(status, msg, **headers)

    async def v2_model(request: Request) -> Response:
        if not authorized(request):
            return error(401, "send Authorization: Bearer <token>", **{"WWW-Authenticate": "Bearer"})
        try:
            model = oip.find(served, request.path_params["name"], request.path_params.get("version"))
        except oip.ModelNotFound as e:
            return error(404, str(e))
        return JSONResponse(model.metadata())

    async def v2_model_ready(request: Request) -> Response:
        try:
            oip.find(served, request.path_params["name"], request.path_params.get("version"))
        except oip.ModelNotFound as e:
            return error(404, str(e))
        return JSONResponse({"name": request.path_params["name"], "ready": ready.is_set()})

    async def v2_infer(request: Request) -> Response:
        name = request.path_params["name"]
        if not authorized(request):
            return v2_error(name, 401, "send Authorization: Bearer <token>", **{"WWW-Authenticate": "Bearer"})
        try:
            model = oip.find(served, name, request.path_params.get("version"))
            body = await read_body(request)
            head_len = request.headers.get("inference-header-content-length")
            req, x, binary_out = _parse_infer(model, body, head_len)
            rows = await asyncio.wait_for(asyncio.wrap_future(model.run(x)), cfg.request_timeout_s)
        except oip.ModelNotFound as e:
            return v2_error(name, 404, str(e))
        except _TooLarge:
            return v2_error(name, 413, f"request body over {cfg.max_body_bytes} bytes")
        except _SlowBody:
            return v2_error(name, 408, f"request body not received within {cfg.body_timeout_s:g}s")
        except (Overloaded, BatcherClosed) as e:
            return v2_error(name, 503, str(e), **{"Retry-After": "1"})
        except (InputError, ValueError) as e:
            return v2_error(name, 400, str(e))
        except asyncio.TimeoutError:
            return v2_error(name, 504, f"request took over {cfg.request_timeout_s:.0f}s")
        if name == "decoder":
            m["samples"].inc(len(rows))
        m["infer"].labels("http", name, "200").inc()
        head, blobs = _infer_response(model, req, model.split(rows), binary_out)
        if not blobs:
            return Response(head, media_type="application/json")
        return Response(
            head + b"".join(blobs),
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(len(head))},
        )

    async def not_found(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 404)
        return error(status, f"{request.method} {request.url.path}: {getattr(exc, 'detail', 'not found')}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        ready.clear()
        if encoder is not None:
            await asyncio.to_thread(encoder.close, True)  # answer what was accepted, then stop
        await asyncio.to_thread(batcher.close, True)
        image_pool.shutdown(wait=False, cancel_futures=True)

    app = Starlette(
        routes=[
            Route("/v1/sample", sample, methods=["POST"]),
            Route("/v1/reconstruct", reconstruct, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/v2", v2_server, methods=["GET"]),
            Route("/v2/health/live", v2_live, methods=["GET"]),
            Route("/v2/health/ready", v2_ready, methods=["GET"]),
            *[  # each model route with and without /versions/{version}
                Route(f"/v2/models/{{name}}{version}{tail}", handler, methods=[method])
                for tail, handler, method in (
                    ("", v2_model, "GET"),
                    ("/ready", v2_model_ready, "GET"),
                    ("/infer", v2_infer, "POST"),
                )
                for version in ("", "/versions/{version}")
            ],
        ],
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.sampler = sampler
    app.state.oip = served
    app.state.metrics = m
    app.state.ready = ready
    app.state.token = token
    return app


class _TooLarge(Exception):
    pass


def oip_server_metadata() -> dict[str, Any]:
    from vaegan import __version__

    return {"name": "vaegan", "version": __version__, "extensions": ["binary_tensor_data"]}


def _parse_infer(
    model: oip.OipModel, body: bytes, head_len: str | None
) -> tuple[dict, np.ndarray, dict[str, bool]]:
    """An infer request (JSON, or JSON plus binary tensor data) -> (request, input array, which
    outputs to answer in binary)."""
    if head_len is not None:
        if not head_len.isdigit() or int(head_len) > len(body):
            raise InputError("Inference-Header-Content-Length is not the length of the JSON part of the body")
        head, raw = body[: int(head_len)], body[int(head_len) :]
    else:
        head, raw = body, b""
    try:
        req = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError("the inference request is not valid JSON") from None
    except RecursionError:
        raise InputError("the inference request is JSON nested too deeply") from None
    inputs = req.get("inputs") if isinstance(req, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        want = model.inputs[0]
        raise InputError(f"{model.name} takes one input tensor {want.name!r} ({want.datatype} {want.shape})")
    t = inputs[0]
    name, datatype, shape = t.get("name"), t.get("datatype"), t.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InputError(f"input {name!r}: shape must be a list of integers, got {shape!r}")
    model.check_input(str(name), str(datatype), shape)
    size = (t.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != len(raw):
            raise InputError(
                f"input {name!r}: binary_data_size {size!r} does not match the {len(raw)} bytes sent"
            )
        x = oip.from_bytes(str(datatype), shape, raw)
    else:
        x = oip.to_array(str(datatype), shape, t.get("data"))
    default = bool((req.get("parameters") or {}).get("binary_data_output", False))
    asked = req.get("outputs")
    names = [o.name for o in model.outputs]
    binary = dict.fromkeys(names, default)
    if isinstance(asked, list) and asked:
        binary = {}
        for o in asked:
            oname = o.get("name") if isinstance(o, dict) else None
            if oname not in names:
                raise InputError(f"{model.name} has outputs {names}, not {oname!r}")
            binary[oname] = bool((o.get("parameters") or {}).get("binary_data", default))
    return req, x, binary


def _infer_response(
    model: oip.OipModel, req: dict, arrays: list[np.ndarray], binary: dict[str, bool]
) -> tuple[bytes, list[bytes]]:
    outputs, blobs = [], []
    for spec, arr in zip(model.outputs, arrays, strict=True):
        if spec.name not in binary:
            continue
        out: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": list(arr.shape)}
        if binary[spec.name]:
            blob = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            out["data"] = arr.reshape(-1).tolist()
        outputs.append(out)
    resp: dict[str, Any] = {"model_name": model.name, "model_version": oip.VERSION, "outputs": outputs}
    if "id" in req:
        resp["id"] = req["id"]
    return json.dumps(resp).encode(), blobs


class _SlowBody(Exception):
    pass


class _Slots:
    """A non-blocking counter of work in hand: `take()` raises Overloaded when all are in use."""

    def __init__(self, n: int):
        self.n, self.used, self.lock = n, 0, threading.Lock()

    @contextlib.contextmanager
    def take(self):
        with self.lock:
            if self.used >= self.n:
                raise Overloaded(f"{self.n} uploaded images are already being decoded: retry shortly")
            self.used += 1
        try:
            yield
        finally:
            with self.lock:
                self.used -= 1


def _png(images: np.ndarray) -> bytes:
    buf = io.BytesIO()
    to_pil(images[0] if len(images) == 1 else grid(images)).save(buf, format="PNG")
    return buf.getvalue()


def _decode_image(body: bytes, sampler: Sampler) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from vaegan.core.images import fit_image

    try:
        img = Image.open(io.BytesIO(body))
        if img.width * img.height > 16_000_000:
            raise InputError("image is over 16 megapixels")
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(
            f"body is not a readable image ({type(e).__name__}); send PNG, JPEG or BMP"
        ) from None
    h, _, c = sampler.image_shape
    return fit_image(img, h, c)[None]


def uvicorn_config(app: Any, host: str, port: int, cfg: ServeConfig, log_level: str = "info") -> Any:
    """uvicorn with the connection limits a public port needs: idle keep-alives closed after
    --keep-alive, request heads that do not arrive within --header-timeout closed (uvicorn itself
    waits for them forever: 1000 trickling sockets once exhausted the file descriptors), at most
    --max-connections open, and repeated connection errors logged once per 10 s, not per socket."""
    import uvicorn

    _rate_limit_logs()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=_guarded_h11(cfg.header_timeout_s, cfg.max_connections),
        timeout_keep_alive=int(max(1, round(cfg.keep_alive_s))),
        timeout_graceful_shutdown=30,
    )


def _guarded_h11(header_timeout: float, max_connections: int) -> type:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        """uvicorn's h11 protocol, plus a deadline for the first request head and a connection cap."""

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                _log_limited("closed a connection: %d are open (--max-connections)", max_connections)
                transport.close()
                return
            self._head_deadline = self.loop.call_later(header_timeout, self._head_expired)

        def _head_expired(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                _log_limited("closed a connection that sent no request head within %gs", header_timeout)
                self.transport.close()

        def connection_lost(self, exc) -> None:
            deadline = getattr(self, "_head_deadline", None)
            if deadline is not None:
                deadline.cancel()
            super().connection_lost(exc)

    return GuardedH11


_last_logged: dict[str, float] = {}


def _log_limited(msg: str, *args: Any) -> None:
    now = time.monotonic()
    if now - _last_logged.get(msg, -1e9) >= 10.0:
        _last_logged[msg] = now
        log.warning(msg + " (said at most once per 10 s)", *args)


class _OncePer10s(logging.Filter):
    """Repeats of one message (an accept() failing with "Too many open files", say) pass once per
    10 s: under attack the log must not become the next thing to fill up."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        if now - _last_logged.get(key, -1e9) < 10.0:
            return False
        _last_logged[key] = now
        return True


def _rate_limit_logs() -> None:
    for name in ("uvicorn.error", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OncePer10s) for f in logger.filters):
            logger.addFilter(_OncePer10s())


def serve(sampler: Sampler, host: str, port: int, cfg: ServeConfig) -> None:
    """Run until SIGINT/SIGTERM; uvicorn then stops accepting and finishes what it accepted."""
    import uvicorn

    app = create_app(sampler, cfg)
    grpc_server = None
    if cfg.grpc_port is not None:
        from vaegan.runtime.grpc_oip import start

        grpc_server, bound = start(app, host, cfg.grpc_port, timeout_s=cfg.request_timeout_s)
        log.info("Open Inference Protocol over gRPC on %s:%d", host, bound)
    try:
        uvicorn.Server(uvicorn_config(app, host, port, cfg)).run()
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=5).wait()

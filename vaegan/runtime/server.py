"""`vaegan serve`: the Sampler over HTTP (starlette + uvicorn), with micro-batching.

GET  /                a page to look at the model in a browser (--no-ui turns it off)
POST /v1/sample       JSON {"n", "seed", "temperature", "class", "between": [a, b], "format": "png" | "npy"}
POST /v1/reconstruct  an image file as the body (PNG/JPEG/BMP) -> PNG of the reconstruction
GET  /healthz         liveness, always open; model, backend and queue depth only with the token
GET  /metrics         Prometheus text: requests, batch sizes, latency
POST /v2/repository/models/{name}/load   load the artifact dir again (Triton's repository API)

Inference runs on the batchers' threads; the event loop only parses, waits and encodes. Admission is
counted in images: the decoder's queue takes at most --max-queue waiting images and serves small
requests first, uploaded images are decoded in their own bounded pool (--max-decoding), and PNG
encoding of answers runs apart from both, so a flood of large uploads cannot delay /v1/sample. A full
queue answers 503 with Retry-After; bad input answers 4xx with {"error": ...}. Connections that do not
send a request head in --header-timeout, bodies slower than --body-timeout and idle keep-alives are
closed, and at most --max-connections are open (vaegan.runtime.http_guard); nothing a client sends
stops the server. What the front-ends share (models, batchers, metrics, the token, the error-to-status
table) is the ServingCore of vaegan.runtime.serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from vaegan.config import ServeConfig
from vaegan.core.errors import DataError, InputError, Overloaded
from vaegan.core.images import grid, to_pil
from vaegan.runtime import oip, oip_codec
from vaegan.runtime.http_guard import log_limited, uvicorn_config
from vaegan.runtime.sampler import Sampler
from vaegan.runtime.serving import (
    ClientGone,
    ServingCore,
    SlowBody,
    TooLarge,
    Unauthorized,
    answer,
    server_metadata,
)

log = logging.getLogger(__name__)
__all__ = ["ServingCore", "create_app", "uvicorn_config"]


def create_app(core: ServingCore | Sampler, cfg: ServeConfig | None = None):
    """The HTTP front-end over a ServingCore (or a Sampler, for which one is made with cfg). The
    app's shutdown drains and closes the core's batchers."""
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    if not isinstance(core, ServingCore):
        core = ServingCore(core, cfg or ServeConfig())
    cfg, m = core.cfg, core.metrics  # core.sampler is read per request: a reload swaps it
    image_pool = ThreadPoolExecutor(1, thread_name_prefix="vaegan-image-decode")
    decoding = threading.BoundedSemaphore(cfg.max_decoding)

    def error_response(e: BaseException) -> JSONResponse:
        a = answer(e, cfg.request_timeout_s)
        headers = {"Retry-After": "1"} if a.http == 503 else {}
        if a.http == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if a.request_id:
            headers["X-Request-Id"] = a.request_id
        if a.http == 499:
            log_limited("a client closed its connection before its request was read (counted as 499)")
        return JSONResponse({"error": a.message}, status_code=a.http, headers=headers)

    def require_token(request: Request) -> None:
        if not core.authorized(request.headers.get("authorization")):
            raise Unauthorized("send Authorization: Bearer <token>")

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cfg.max_body_bytes):
            raise TooLarge(f"request body over {cfg.max_body_bytes} bytes")

        async def read() -> bytes:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > cfg.max_body_bytes:
                    raise TooLarge(f"request body over {cfg.max_body_bytes} bytes")
            return bytes(body)

        try:
            return await asyncio.wait_for(read(), cfg.body_timeout_s)
        except asyncio.TimeoutError:
            raise SlowBody(f"request body not received within {cfg.body_timeout_s:g}s") from None
        except ClientDisconnect:
            raise ClientGone("the client closed the connection mid-body") from None

    async def wait(fut) -> np.ndarray:
        return await asyncio.wait_for(asyncio.wrap_future(fut), cfg.request_timeout_s)

    def route(handler, metric: str | None = None, auth: bool = True, infer: bool = False):
        """Every handler behind the one error path of this protocol: the token first (where the
        route needs one), then the handler, and any error answered as serving.answer says."""

        async def inner(request: Request) -> Response:
            t0 = time.perf_counter()
            try:
                if auth:
                    require_token(request)  # before any work on the request
                resp = await handler(request)
            except Exception as e:  # noqa: BLE001 - a request must never take the server down
                resp = error_response(e)
            if metric is not None:
                m["requests"].labels(metric, str(resp.status_code)).inc()
                m["latency"].labels(metric).observe(time.perf_counter() - t0)
            if infer:
                core.count_infer("http", request.path_params["name"], str(resp.status_code))
            return resp

        return inner

    async def sample(request: Request) -> Response:
        t0 = time.perf_counter()
        req = _json_object(await read_body(request), 'like {"n": 8, "seed": 0}')
        unknown = set(req) - {"n", "seed", "temperature", "format", "class", "between"}
        if unknown:
            raise InputError(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
        fmt, seed = req.get("format", "png"), req.get("seed")
        if fmt not in ("png", "npy"):
            raise InputError(f"format must be png or npy, got {fmt!r}")
        params = {k: req[k] for k in ("seed", "temperature", "class", "between") if k in req}
        fut = core.sample(req.get("n", 1), params)
        images = await wait(fut)
        m["samples"].inc(len(images))
        headers = {"X-Vaegan-N": str(len(images))}
        if seed is not None:
            headers["X-Vaegan-Seed"] = str(seed)
        if fmt == "npy":
            buf = io.BytesIO()
            np.save(buf, images, allow_pickle=False)
            body, media = buf.getvalue(), "application/x-npy"
        else:  # off the event loop: it parses other requests meanwhile, which batch better
            body, media = await asyncio.to_thread(_png, images), "image/png"
        core.stats["sample"].record(t0, fut, time.perf_counter(), len(images))
        return Response(body, media_type=media, headers=headers)

    async def reconstruct(request: Request) -> Response:
        body = await read_body(request)
        if not body:
            raise InputError("send an image file (PNG, JPEG or BMP) as the request body")
        if core.encoder is None:
            raise InputError("this artifact dir has no encoder: /v1/reconstruct needs one")
        if not decoding.acquire(blocking=False):
            raise Overloaded(f"{cfg.max_decoding} uploaded images are already being decoded: retry shortly")
        try:
            loop = asyncio.get_running_loop()
            image = await loop.run_in_executor(image_pool, _decode_image, body, core.sampler)
        finally:
            decoding.release()
        mu = (await wait(core.encode(image)))[:, : core.sampler.latent_dim]
        rec = await wait(core.decode(mu))
        m["samples"].inc(1)
        return Response(await asyncio.to_thread(_png, rec), media_type="image/png")

    async def healthz(request: Request) -> Response:
        """Liveness for orchestrators: always open; the details only to those who may see them."""
        body: dict[str, Any] = {"status": "ok"}
        if core.authorized(request.headers.get("authorization")):
            s = core.sampler
            body |= {
                "model": s.manifest.model,
                "backend": s.backend_info["backend"],
                "precision": s.backend_info["precision"],
                "manifest_sha256": core.loaded["manifest_sha256"],
                # the dir was re-exported and not reloaded: this is not what it holds now
                "stale": core.stale(),
                "queue": core.decoder.queued,
                "max_batch": cfg.max_batch,
                "max_n": cfg.max_n,
            }
        return JSONResponse(body)

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        m["queue"].set(core.decoder.queued)
        return PlainTextResponse(generate_latest(core.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------- Open Inference Protocol (KServe v2) over HTTP
    async def v2_server(request: Request) -> Response:
        return JSONResponse(server_metadata())

    async def v2_live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def v2_ready(request: Request) -> Response:
        ok = core.ready.is_set()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    def find(request: Request) -> oip.OipModel:
        return oip.find(core.models, request.path_params["name"], request.path_params.get("version"))

    async def v2_model(request: Request) -> Response:
        return JSONResponse(find(request).metadata())

    async def v2_model_ready(request: Request) -> Response:
        find(request)
        return JSONResponse({"name": request.path_params["name"], "ready": core.ready.is_set()})

    async def v2_infer(request: Request) -> Response:
        t0 = time.perf_counter()
        model = find(request)
        body = await read_body(request)
        req, x, binary_out = oip_codec.parse_infer(
            model, body, request.headers.get("inference-header-content-length")
        )
        fut = model.run(x, oip_codec.parameters(req, ""))
        rows = await wait(fut)
        if model.name in ("decoder", "sample"):
            m["samples"].inc(len(rows))
        head, blobs = oip_codec.infer_response(model, req, model.split(rows), binary_out)
        core.stats[model.name].record(t0, fut, time.perf_counter(), len(rows))
        if not blobs:
            return Response(head, media_type="application/json")
        return Response(
            head + b"".join(blobs),
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(len(head))},
        )

    async def v2_model_stats(request: Request) -> Response:
        """Triton's statistics extension: per-model request counts and time split (serving.InferStats)."""
        name = request.path_params.get("name", "")
        return JSONResponse({"model_stats": core.statistics(name)})

    async def v2_repository_load(request: Request) -> Response:
        """Triton's repository API: load the model again from the artifact dir (both models come from
        one dir, so loading either reloads it)."""
        find(request)
        loaded = await asyncio.to_thread(core.reload)
        return JSONResponse(loaded)

    page = _ui_page() if cfg.ui else None  # read once: an unopened page costs nothing

    async def ui(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8")

    async def not_found(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 404)
        msg = f"{request.method} {request.url.path}: {getattr(exc, 'detail', 'not found')}"
        return JSONResponse({"error": msg}, status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(core.close, True)  # answer what was accepted, then stop
        image_pool.shutdown(wait=False, cancel_futures=True)

    return Starlette(
        routes=[
            *([Route("/", route(ui, auth=False), methods=["GET"])] if page is not None else []),
            Route("/v1/sample", route(sample, "sample"), methods=["POST"]),
            Route("/v1/reconstruct", route(reconstruct, "reconstruct"), methods=["POST"]),
            Route("/healthz", route(healthz, auth=False), methods=["GET"]),
            Route("/metrics", route(metrics, "metrics"), methods=["GET"]),
            Route("/v2", route(v2_server), methods=["GET"]),
            # health stays open under --token: orchestrators' probes carry no credentials (docs/deploying.md)
            Route("/v2/health/live", route(v2_live, auth=False), methods=["GET"]),
            Route("/v2/health/ready", route(v2_ready, auth=False), methods=["GET"]),
            Route("/v2/repository/models/{name}/load", route(v2_repository_load), methods=["POST"]),
            Route("/v2/models/stats", route(v2_model_stats), methods=["GET"]),
            *[  # each model route with and without /versions/{version}
                Route(f"/v2/models/{{name}}{version}{tail}", handler, methods=[method])
                for tail, handler, method in (
                    ("", route(v2_model), "GET"),
                    ("/ready", route(v2_model_ready, auth=False), "GET"),
                    ("/infer", route(v2_infer, infer=True), "POST"),
                    ("/stats", route(v2_model_stats), "GET"),
                )
                for version in ("", "/versions/{version}")
            ],
        ],
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan,
    )


def _ui_page() -> bytes:
    """The page at / (vaegan/runtime/ui/index.html): static HTML and script, no CDN, nothing fetched
    but the server's own API. It holds no model data: a page under --token asks for the token."""
    from importlib.resources import files

    return (files("vaegan.runtime") / "ui" / "index.html").read_bytes()


def _json_object(body: bytes, example: str) -> dict:
    try:
        req = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"body is not valid JSON ({e.__class__.__name__})") from None
    except RecursionError:
        raise InputError("body is JSON nested too deeply") from None
    if not isinstance(req, dict):
        raise InputError(f"body must be a JSON object {example}")
    return req


def _png(images: np.ndarray) -> bytes:
    buf = io.BytesIO()
    to_pil(images[0] if len(images) == 1 else grid(images)).save(buf, format="PNG")
    return buf.getvalue()


def _decode_image(body: bytes, sampler: Sampler) -> np.ndarray:
    from vaegan.core.images import MAX_PIXELS, fit_image, open_image

    try:
        img = open_image(io.BytesIO(body), "body")
    except DataError:
        raise InputError(
            f"body is not a readable image of at most {MAX_PIXELS // 1_000_000} megapixels; send PNG, JPEG or BMP"
        ) from None
    h, _, c = sampler.image_shape
    return fit_image(img, h, c)[None]

"""The serving core behind both front-ends of `vaegan serve`: HTTP (server.py) and gRPC (grpc_oip.py).

One object holds what a request touches: the served models and their batchers, the settings, the
metrics, readiness and the token. Each front-end only translates its protocol onto it, and both
answer an error with the status of one table (STATUS) and check a token with one function.

Every request is validated on its own before it joins a batch, so one client's NaN latents are that
client's 400 and nobody else's; if a merged batch still fails in the engine, the batcher retries its
requests one by one, and only the one that fails gets the error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaegan.config import ServeConfig
from vaegan.core.errors import InputError, Overloaded, VaeganError
from vaegan.runtime import oip
from vaegan.runtime.batcher import BatcherClosed, MicroBatcher
from vaegan.runtime.sampler import Sampler

log = logging.getLogger(__name__)
UNKNOWN_MODEL = "_unknown"  # the one metric label of every model name this server does not serve


class Unauthorized(VaeganError):
    """No or a wrong bearer token."""


class TooLarge(InputError):
    """A request body over --max-body-bytes."""


class SlowBody(InputError):
    """A request body that did not arrive within --body-timeout."""


class ClientGone(VaeganError):
    """The client closed the connection before its request was read: nobody to answer."""


class ReloadFailed(VaeganError):
    """A reload whose new model did not load or run: the old one keeps serving."""


class EngineFailed(VaeganError):
    """The engine raised while running a request that passed validation: a server error. The
    engine's own text (paths, shapes) is logged with the request id, never sent to the client."""

    def __init__(self, request_id: str):
        super().__init__(f"internal error (request id {request_id})")
        self.request_id = request_id


# Each error a request can end in, its HTTP status and its gRPC status code, first match wins.
# 499 is nginx's "client closed request": counted, never sent (nobody is there to read it).
STATUS: tuple[tuple[tuple[type[BaseException], ...], int, str], ...] = (
    ((Unauthorized,), 401, "UNAUTHENTICATED"),
    ((oip.ModelNotFound,), 404, "NOT_FOUND"),
    ((TooLarge,), 413, "RESOURCE_EXHAUSTED"),
    ((SlowBody,), 408, "DEADLINE_EXCEEDED"),
    ((ClientGone,), 499, "CANCELLED"),
    ((ReloadFailed,), 409, "FAILED_PRECONDITION"),
    ((Overloaded, BatcherClosed), 503, "UNAVAILABLE"),
    ((InputError,), 400, "INVALID_ARGUMENT"),  # the request's own validation, and nothing else
    ((asyncio.TimeoutError, concurrent.futures.TimeoutError, TimeoutError), 504, "DEADLINE_EXCEEDED"),
    ((EngineFailed,), 500, "INTERNAL"),
)


def status_of(e: BaseException) -> tuple[int, str]:
    """(HTTP status, gRPC status code name) for an error; anything unknown is a 500 / INTERNAL."""
    for kinds, http, grpc_code in STATUS:
        if isinstance(e, kinds):
            return http, grpc_code
    return 500, "INTERNAL"


def is_bug(e: BaseException) -> bool:
    """An error the table does not know: not one of vaegan's answers but a bug, logged with its traceback."""
    return not any(isinstance(e, kinds) for kinds, _, _ in STATUS)


@dataclass(frozen=True)
class Answer:
    """What a front-end sends for an error: the same on every protocol."""

    http: int
    grpc: str
    message: str
    request_id: str | None = None


def answer(e: BaseException, timeout_s: float) -> Answer:
    """The one error path of both front-ends. A client error (the table's 4xx rows) says what to fix;
    anything else is a server error whose text never leaves the server: it is logged with its
    traceback under a request id, and the client gets that id to quote."""
    http, grpc_code = status_of(e)
    if http == 504:
        return Answer(http, grpc_code, f"request took over {timeout_s:.0f}s")
    if isinstance(e, EngineFailed):
        return Answer(http, grpc_code, str(e), e.request_id)
    if is_bug(e) or http == 500:
        rid = new_request_id()
        log.error("internal error (request id %s)", rid, exc_info=e)
        return Answer(500, "INTERNAL", f"internal error (request id {rid})", rid)
    return Answer(http, grpc_code, str(e) or type(e).__name__)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def _engine_errors(fut: Future) -> Future:
    """The batcher's future, with an engine's exception turned into EngineFailed (logged here, with
    the engine's text and traceback, under the id the client gets)."""
    out: Future = Future()

    def done(f: Future) -> None:
        e = f.exception()
        if e is None:
            out.timing = getattr(f, "timing", None)  # type: ignore[attr-defined]
            out.set_result(f.result())
        elif isinstance(e, BatcherClosed | Overloaded):
            out.set_exception(e)
        else:
            rid = new_request_id()
            log.error("the engine failed a request (request id %s)", rid, exc_info=e)
            out.set_exception(EngineFailed(rid))

    fut.add_done_callback(done)
    return out


def bearer_ok(authorization: str | None, token: str | None) -> bool:
    """The one token check: `Authorization: Bearer TOKEN` (an HTTP header or gRPC metadata), compared
    in constant time. Without a token configured everything is allowed."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def server_metadata() -> dict[str, Any]:
    from vaegan import __version__

    return {"name": "vaegan", "version": __version__, "extensions": ["binary_tensor_data"]}


def _metrics() -> tuple[Any, dict[str, Any]]:
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
            "Open Inference Protocol requests (model: a served model's name, or _unknown)",
            ["protocol", "model", "status"],
            registry=reg,
        ),
    }


STAT_PARTS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


class InferStats:
    """Per-model request statistics in the shape of Triton's statistics extension
    (GET /v2/models/{name}/stats, gRPC ModelStatistics), so perf_analyzer and `benchmarks/serve_bench.py`
    can split a request's time on the server: compute_input (from the handler's start to the request
    joining the batcher: reading and checking it), queue (waiting for the engine, batching delay
    included), compute_infer (the engine call that ran it, shared with its batch), compute_output
    (from the engine's end to the response being built: the hop back and encoding). Totals in ns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.parts = {k: [0, 0] for k in STAT_PARTS}  # part -> [count, ns]
        self.inference_count = 0
        self.last_inference_ms = 0

    def record(self, t_arrive: float, fut: Future | None, t_end: float, rows: int, ok: bool = True) -> None:
        timing = getattr(fut, "timing", None) if ok else None
        with self._lock:
            self._add("success" if ok else "fail", t_end - t_arrive)
            if timing is not None:
                t_submit, t_start, t_done = timing
                self._add("compute_input", t_submit - t_arrive)
                self._add("queue", t_start - t_submit)
                self._add("compute_infer", t_done - t_start)
                self._add("compute_output", t_end - t_done)
            if ok:
                self.inference_count += rows
                self.last_inference_ms = int(time.time() * 1000)

    def _add(self, part: str, seconds: float) -> None:
        c = self.parts[part]
        c[0] += 1
        c[1] += max(0, int(seconds * 1e9))

    def to_dict(self, name: str, batcher: MicroBatcher | None) -> dict[str, Any]:
        with self._lock:
            stats = {k: {"count": c, "ns": ns} for k, (c, ns) in self.parts.items()}
            return {
                "name": name,
                "version": oip.VERSION,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": batcher.stats.batches if batcher is not None else 0,
                "inference_stats": stats,
            }


@dataclass
class ServingCore:
    """The served models, their batchers, settings, metrics, readiness and token.

    loader: how to load the artifact dir again (given by `vaegan serve`): `reload()` loads, checks and
    warms the new model beside the served one, then swaps it in; requests already queued finish on
    the old one, a request that reaches the old batcher as it closes is sent to the new one."""

    sampler: Sampler
    cfg: ServeConfig
    loader: Callable[[], Sampler] | None = None
    registry: Any = field(init=False)
    metrics: dict[str, Any] = field(init=False)
    ready: threading.Event = field(init=False, default_factory=threading.Event)
    decoder: MicroBatcher = field(init=False)
    encoder: MicroBatcher | None = field(init=False, default=None)
    models: dict[str, oip.OipModel] = field(init=False)
    loaded: dict[str, Any] = field(init=False, default_factory=dict)  # what is served: manifest hash, time
    stats: dict[str, InferStats] = field(init=False, default_factory=dict)  # model name -> its statistics

    def __post_init__(self) -> None:
        self.cfg = ServeConfig(**vars(self.cfg)).validate()
        self.cfg.max_batch = self.cfg.max_batch or self.sampler.max_batch  # default: the export's
        self.registry, self.metrics = _metrics()
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._install(self.sampler)
        self.ready.set()
        if self.cfg.reload == "poll" and self.loader is not None:
            threading.Thread(target=self._poll, name="vaegan-reload-poll", daemon=True).start()

    def _install(self, s: Sampler) -> None:
        c, batch = self.cfg, int(self.cfg.max_batch or s.max_batch)
        decoder = MicroBatcher(s.decode, batch, c.max_delay_ms, c.max_queue, self._on_batch)
        encoder = None
        if s.encoder_runner is not None:  # rows are mu and logvar side by side
            encoder = MicroBatcher(
                lambda x: np.concatenate(s.encode(x), axis=1), batch, c.max_delay_ms, c.max_queue
            )
        # one assignment each: a request sees the old set or the new, and retries a closed batcher
        self.sampler, self.decoder, self.encoder = s, decoder, encoder
        self.models = oip.models(s, self.decode, self.encode if encoder else None, self.sample)
        for name in self.models:  # kept across reloads, as Triton keeps a model's counts
            self.stats.setdefault(name, InferStats())
        self.loaded = {"manifest_sha256": _manifest_sha(s), "loaded_at": time.time()}

    def reload(self) -> dict[str, Any]:
        """Load the artifact dir again, verify and warm it beside the served model, then swap. On any
        failure the served model stays and ReloadFailed says why."""
        if self.loader is None:
            raise ReloadFailed("this server was not started from an artifact dir: nothing to reload")
        with self._reload_lock:
            try:
                new = self.loader()
            except VaeganError as e:
                log.error("reload refused, still serving the previous model: %s", e)
                raise ReloadFailed(f"reload refused, still serving the previous model: {e}") from None
            try:
                new.decode(new.latents(1, seed=0))  # warm: its first request pays no engine start-up
                if new.encoder_runner is not None:
                    new.encode(np.zeros((1, *new.image_shape), np.uint8))
            except Exception as e:  # noqa: BLE001 - whatever the new engine raises, the old one stays
                new.close()
                rid = new_request_id()
                log.error(
                    "reload refused: the new model failed its first run (request id %s)", rid, exc_info=e
                )
                raise ReloadFailed(
                    f"reload refused, still serving the previous model: the new model failed its first run "
                    f"(request id {rid})"
                ) from None
            old_sampler, old = self.sampler, (self.decoder, self.encoder)
            self._install(new)
            for b in old:
                if b is not None:
                    b.close(drain=True)  # what was queued there is answered by the old engine
            old_sampler.close()
            log.info("reloaded: now serving manifest %s", self.loaded["manifest_sha256"][:12])
            return dict(self.loaded)

    def _poll(self) -> None:
        seen = _dir_signature(self.sampler)
        while not self._stop.wait(self.cfg.reload_poll_s):
            now = _dir_signature(self.sampler)
            if now == seen:
                continue
            seen = now
            with contextlib.suppress(ReloadFailed):  # logged by reload; tried again on the next change
                self.reload()

    def stale(self) -> bool:
        """Whether the artifact dir on disk is no longer the model served (a re-export not reloaded)."""
        return _manifest_sha(self.sampler) != self.loaded.get("manifest_sha256")

    @property
    def token(self) -> str | None:
        return self.cfg.token

    def authorized(self, authorization: str | None) -> bool:
        return bearer_ok(authorization, self.cfg.token)

    def model_label(self, name: str) -> str:
        """A metric label from a name a client sent: only served names become labels, so a flood of
        made-up names cannot grow /metrics or the server's memory."""
        return name if name in self.models else UNKNOWN_MODEL

    def statistics(self, name: str = "") -> list[dict[str, Any]]:
        """Triton's model statistics for one served model, or all of them ('')."""
        names = [oip.find(self.models, name, "").name] if name else list(self.models)
        batchers = {"decoder": self.decoder, "sample": self.decoder, "encoder": self.encoder}
        return [self.stats[n].to_dict(n, batchers.get(n)) for n in names]

    def count_infer(self, protocol: str, model: str, status: str) -> None:
        self.metrics["infer"].labels(protocol, self.model_label(model), status).inc()

    def _on_batch(self, rows: int, seconds: float) -> None:
        self.metrics["batch"].observe(rows)
        self.metrics["batch_seconds"].observe(seconds)

    # ------------------------------------------------- requests, each checked before it joins a batch
    def sample(self, n: Any, params: dict[str, Any]) -> Future:
        """n images from the prior, as /v1/sample and the OIP `sample` model ask: params seed,
        temperature and class (a class of a labelled training set), each checked like every field."""
        unknown = set(params) - {"seed", "temperature", "class", "between", "binary_data_output"}
        if unknown:
            raise InputError(
                f"unknown parameters: {', '.join(sorted(map(str, unknown)))} (seed, temperature, class, between)"
            )
        if isinstance(n, int) and not isinstance(n, bool) and n > self.cfg.max_n:
            raise InputError(f"n={n} is over this server's limit of {self.cfg.max_n} (--max-n)")
        class_name = params.get("class")
        if class_name is not None and not isinstance(class_name, str):
            raise InputError(f"class must be a string (one of the model's class names), got {class_name!r}")
        between = params.get("between")
        if between is not None:  # n steps from seed a's latent to seed b's, as `vaegan sample --interpolate`
            if not (isinstance(between, list) and len(between) == 2):
                raise InputError(f"between must be two seeds [a, b], got {between!r}")
            za, zb = (self.sampler.latents(1, seed=s, class_name=class_name)[0] for s in between)
            return self.decode(self.sampler.interpolation_latents(za, zb, n))
        z = self.sampler.latents(
            n, seed=params.get("seed"), temperature=params.get("temperature", 1.0), class_name=class_name
        )
        return self.decode(z)

    def decode(self, z: Any) -> Future:
        """Latents -> Future of uint8 images; bad latents raise InputError here, before batching, and
        whatever the engine raises after is an EngineFailed."""
        return self._submit("decoder", lambda s: s.check_latents(z))

    def encode(self, images: Any) -> Future:
        """uint8 images -> Future of [mu | logvar] rows."""
        return self._submit("encoder", lambda s: s.check_images(images))

    def _submit(self, which: str, check: Callable[[Sampler], Any]) -> Future:
        while True:
            sampler, batcher = self.sampler, getattr(self, which)
            if batcher is None:
                raise InputError("this artifact dir has no encoder")
            try:
                return _engine_errors(batcher.submit(check(sampler)))
            except BatcherClosed:
                if batcher is getattr(self, which) and not self.ready.is_set():
                    raise  # shutting down, not a reload
                if batcher is getattr(self, which):
                    time.sleep(0.001)  # a reload is installing the new batcher right now

    def close(self, drain: bool = True) -> None:
        """Stop taking requests; with drain, answer what was accepted first."""
        self._stop.set()
        self.ready.clear()
        if self.encoder is not None:
            self.encoder.close(drain)
        self.decoder.close(drain)


def _manifest_sha(s: Sampler) -> str:
    """The sha256 of the served dir's manifest.json as it is on disk now ('' when it cannot be read)."""
    try:
        return hashlib.sha256((Path(s.art_dir or "") / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return ""


def _dir_signature(s: Sampler) -> tuple[int, int, int] | None:
    """What changes when an export replaces the dir (it swaps the whole dir, so the inode changes)."""
    try:
        st = (Path(s.art_dir or "") / "manifest.json").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size

"""MicroBatcher: merge concurrent requests into engine-sized batches, cheap requests first.

Callers submit rows (latents, images) and get a Future. One worker thread builds each batch of at
most `max_batch` rows: first every waiting request small enough to fit whole (oldest first), then a
chunk of the oldest large request. A large request is run chunk by chunk, so a request for one image
never waits behind a thousand-image one for more than one batch of engine time. With the default
max_delay_ms=0 no request waits while the engine is idle; everything that queued while it was busy
goes into the next batch. On a CPU, where a batch of 1 already runs near the engine's best images/s,
that is the faster setting (docs/benchmarks.md); a delay pays off on GPUs. The queue is bounded in
rows, not requests: when `max_queue` rows wait, `submit` raises Overloaded at once (back-pressure)
rather than letting latency and memory grow without bound.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from vaegan.core.errors import Overloaded, VaeganError


class BatcherClosed(VaeganError):
    """The batcher is shutting down and takes no new requests."""


@dataclass
class _Request:
    x: np.ndarray
    future: Future = field(default_factory=Future)
    t_submit: float = field(default_factory=time.perf_counter)
    t_start: float = 0.0  # its first chunk went to the engine
    taken: int = 0  # rows handed to the engine so far
    started: bool = False  # its future was marked running (or found cancelled)
    parts: list[np.ndarray] = field(default_factory=list)  # results of the chunks run so far

    @property
    def left(self) -> int:
        return len(self.x) - self.taken


@dataclass
class BatcherStats:
    requests: int = 0
    rejected: int = 0
    batches: int = 0
    rows: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # last 1000 batches

    def record(self, size: int) -> None:
        self.batches += 1
        self.rows += size
        self.batch_sizes.append(size)
        del self.batch_sizes[:-1000]


class MicroBatcher:
    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        max_batch: int = 64,
        max_delay_ms: float = 0.0,
        max_queue: int = 256,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        if max_batch < 1 or max_queue < 1 or max_delay_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_delay_ms >= 0")
        self.fn = fn
        self.max_batch = max_batch
        self.max_queue = max_queue  # rows waiting (not yet handed to the engine)
        self.max_delay = max_delay_ms / 1000.0
        self.on_batch = on_batch
        self.stats = BatcherStats()
        self._pending: deque[_Request] = deque()
        self._rows = 0  # rows waiting
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="vaegan-batcher", daemon=True)
        self._worker.start()

    def submit(self, x: np.ndarray) -> Future:
        """Queue rows `x` (e.g. latents [k, Z]); the Future resolves to fn's rows for them, in order."""
        req = _Request(np.asarray(x))
        with self._cond:
            if self._closed:
                raise BatcherClosed("the server is shutting down: retry on another instance")
            # a request larger than one batch may fill the queue only up to one batch short of
            # full: that room stays for small requests, which are served first
            n = len(req.x)
            limit = self.max_queue if n <= self.max_batch else self.max_queue - self.max_batch
            if n > self.max_queue or (self._rows and self._rows + n > limit):
                self.stats.rejected += 1
                raise Overloaded(
                    f"queue full ({self._rows} rows waiting, limit {self.max_queue}): retry shortly"
                )
            self._pending.append(req)
            self._rows += len(req.x)
            self.stats.requests += 1
            self._cond.notify()
        return req.future

    def __call__(self, x: np.ndarray, timeout: float | None = None) -> np.ndarray:
        return self.submit(x).result(timeout)

    @property
    def queued(self) -> int:
        """Rows waiting for the engine."""
        return self._rows

    def close(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop taking requests. drain: answer everything already queued; else fail it."""
        with self._cond:
            self._closed = True
            if not drain:
                for req in self._pending:
                    req.future.set_exception(BatcherClosed("the batcher was closed before this request ran"))
                self._pending.clear()
                self._rows = 0
            self._cond.notify_all()
        self._worker.join(timeout)

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ worker
    def _take(self) -> list[tuple[_Request, int, int]]:
        """The next batch as (request, start, stop) rows: small requests whole, oldest first, then
        the rest of the batch from the oldest request that did not fit. Called under the lock."""
        room, batch = self.max_batch, []
        for req in list(self._pending):
            if 0 < req.left <= room:
                batch.append((req, req.taken, len(req.x)))
                room -= req.left
                req.taken = len(req.x)
        for req in self._pending:
            if room and req.left:
                n = min(room, req.left)
                batch.append((req, req.taken, req.taken + n))
                req.taken += n
                room -= n
        self._rows -= self.max_batch - room
        self._pending = deque(r for r in self._pending if r.left)  # fully handed out: no longer waiting
        return batch

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return  # closed and drained
                if self.max_delay > 0:  # wait for company, up to the oldest request's deadline
                    deadline = self._pending[0].t_submit + self.max_delay
                    while self._rows < self.max_batch and not self._closed:
                        left = deadline - time.perf_counter()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                batch = self._take()
            self._run(batch)

    def _run(self, batch: list[tuple[_Request, int, int]]) -> None:
        for r, _, _ in batch:
            if not r.started:  # its first chunk: mark it running, or learn that it was cancelled
                r.started = True
                r.future.set_running_or_notify_cancel()
        live = [(r, a, b) for r, a, b in batch if not r.future.done()]
        if not live:
            return
        rows = sum(b - a for _, a, b in live)
        t0 = time.perf_counter()
        try:
            x = (
                np.concatenate([r.x[a:b] for r, a, b in live])
                if len(live) > 1
                else live[0][0].x[live[0][1] : live[0][2]]
            )
            out = self.fn(x)
        except BaseException as e:  # noqa: BLE001 - every waiter must be answered
            if len({id(r) for r, _, _ in live}) > 1:
                # one request's rows may be what failed: each runs alone, and only a failing one
                # gets its error (requests are validated before they are queued, so this is rare)
                for part in live:
                    self._run([part])
                return
            for r, _, _ in live:
                if not r.future.done():
                    r.future.set_exception(e)
            return
        with self._cond:
            self.stats.record(rows)
        if self.on_batch:
            self.on_batch(rows, time.perf_counter() - t0)
        t1 = time.perf_counter()
        i = 0
        for r, a, b in live:
            r.parts.append(out[i : i + b - a])
            i += b - a
            if r.t_start == 0.0:
                r.t_start = t0
            if b == len(r.x) and not r.future.done():
                # when it waited and when the engine ran it, for the server's per-request statistics
                r.future.timing = (r.t_submit, r.t_start, t1)  # type: ignore[attr-defined]
                r.future.set_result(r.parts[0] if len(r.parts) == 1 else np.concatenate(r.parts))

"""MicroBatcher: merge concurrent requests into engine-sized batches.

Callers submit latents and get a Future. One worker thread takes the first waiting request, keeps
collecting until `max_batch` rows or `max_delay_ms` have passed, runs the engine once, and splits
the result back in order. With the default max_delay_ms=0 no request waits while the engine is
idle; everything that queued while it was busy goes into the next batch. On a CPU, where a batch of
1 already runs near the engine's best images/s, that is the faster setting (docs/benchmarks.md);
a delay pays off on GPUs, where larger batches are much cheaper per image. The queue is bounded: when it is full, `submit` raises Overloaded at once
(back-pressure) rather than letting latency and memory grow without bound.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
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
        self.max_delay = max_delay_ms / 1000.0
        self.on_batch = on_batch
        self.stats = BatcherStats()
        self._q: queue.Queue[_Request | None] = queue.Queue(maxsize=max_queue)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._loop, name="vaegan-batcher", daemon=True)
        self._worker.start()

    def submit(self, x: np.ndarray) -> Future:
        """Queue rows `x` (e.g. latents [k, Z]); the Future resolves to fn's rows for them, in order."""
        if self._closed.is_set():
            raise BatcherClosed("the server is shutting down: retry on another instance")
        req = _Request(np.asarray(x))
        try:
            self._q.put_nowait(req)
        except queue.Full:
            with self._lock:
                self.stats.rejected += 1
            raise Overloaded(f"queue full ({self._q.maxsize} requests waiting): retry shortly") from None
        with self._lock:
            self.stats.requests += 1
        return req.future

    def __call__(self, x: np.ndarray, timeout: float | None = None) -> np.ndarray:
        return self.submit(x).result(timeout)

    @property
    def queued(self) -> int:
        return self._q.qsize()

    def close(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop taking requests. drain: answer everything already queued; else fail it."""
        self._closed.set()
        if not drain:
            while True:
                try:
                    req = self._q.get_nowait()
                except queue.Empty:
                    break
                if req is not None:
                    req.future.set_exception(BatcherClosed("the batcher was closed before this request ran"))
        with contextlib.suppress(queue.Full):
            self._q.put(None, timeout=timeout)  # wakes the worker; it exits once the queue is empty
        self._worker.join(timeout)

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ worker
    def _loop(self) -> None:
        carry: _Request | None = None  # a request that did not fit the last batch
        stopping = False  # close() was called: answer what is queued, then exit
        while True:
            first: _Request | None
            if carry is not None:
                first, carry = carry, None
            else:
                try:
                    first = self._q.get_nowait() if stopping else self._q.get()
                except queue.Empty:
                    return
                if first is None:
                    stopping = True
                    continue
            batch, rows = [first], len(first.x)
            deadline = first.t_submit + self.max_delay
            while rows < self.max_batch:
                try:
                    nxt = self._q.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    continue
                if rows + len(nxt.x) > self.max_batch:
                    carry = nxt
                    break
                batch.append(nxt)
                rows += len(nxt.x)
            self._run(batch, rows)

    def _run(self, batch: list[_Request], rows: int) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        t0 = time.perf_counter()
        try:
            out = self.fn(np.concatenate([r.x for r in live]) if len(live) > 1 else live[0].x)
        except BaseException as e:  # noqa: BLE001 - every waiter must be answered
            for r in live:
                r.future.set_exception(e)
            return
        with self._lock:
            self.stats.record(rows)
        if self.on_batch:
            self.on_batch(rows, time.perf_counter() - t0)
        i = 0
        for r in live:
            r.future.set_result(out[i : i + len(r.x)])
            i += len(r.x)

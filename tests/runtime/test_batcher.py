import threading
import time

import numpy as np
import pytest

from vaegan.core.errors import Overloaded
from vaegan.runtime.batcher import BatcherClosed, MicroBatcher


def _double(x: np.ndarray) -> np.ndarray:
    return x * 2


def test_32_concurrent_callers_each_get_their_own_rows_in_order():
    seen_batches = []

    def fn(x):
        seen_batches.append(len(x))
        time.sleep(0.002)
        return x * 2

    results, errors = {}, []
    with MicroBatcher(fn, max_batch=16, max_delay_ms=20, max_queue=64) as b:

        def caller(i):
            try:
                x = np.arange(i * 100, i * 100 + 1 + i % 4, dtype=np.float32)[:, None]
                results[i] = (x, b(x, timeout=10))
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert len(results) == 32
    for x, y in results.values():
        assert np.array_equal(y, x * 2)
    assert max(seen_batches) <= 16 and len(seen_batches) < 32  # requests were merged
    assert b.stats.requests == 32 and b.stats.rows == sum(len(x) for x, _ in results.values())


def test_a_full_queue_rejects_instead_of_growing():
    gate = threading.Event()

    def slow(x):
        gate.wait(5)
        return x

    b = MicroBatcher(slow, max_batch=1, max_delay_ms=0, max_queue=2)
    futures = [b.submit(np.zeros((1, 1)))]
    time.sleep(0.05)  # the worker holds the first request inside `slow`
    futures += [b.submit(np.zeros((1, 1))) for _ in range(2)]
    with pytest.raises(Overloaded, match="queue full"):
        b.submit(np.zeros((1, 1)))
    assert b.stats.rejected == 1
    gate.set()
    for f in futures:
        assert f.result(5).shape == (1, 1)
    b.close()


def test_shutdown_answers_every_accepted_request():
    b = MicroBatcher(lambda x: (time.sleep(0.01), x)[1], max_batch=2, max_delay_ms=1, max_queue=100)
    futures = [b.submit(np.full((1, 1), i)) for i in range(20)]
    b.close(drain=True)
    assert [int(f.result(0)[0, 0]) for f in futures] == list(range(20))
    with pytest.raises(BatcherClosed):
        b.submit(np.zeros((1, 1)))


def test_shutdown_without_drain_fails_pending_requests():
    gate = threading.Event()
    b = MicroBatcher(lambda x: (gate.wait(5), x)[1], max_batch=1, max_delay_ms=0, max_queue=100)
    futures = [b.submit(np.zeros((1, 1))) for _ in range(5)]
    time.sleep(0.05)
    closer = threading.Thread(target=b.close, kwargs={"drain": False})
    closer.start()
    time.sleep(0.05)
    gate.set()
    closer.join(5)
    outcomes = []
    for f in futures:
        try:
            f.result(5)
            outcomes.append("ok")
        except BatcherClosed:
            outcomes.append("failed")
    assert outcomes[0] == "ok" and "failed" in outcomes  # each answered one way or the other


def test_engine_errors_reach_every_caller_in_the_batch():
    def boom(x):
        raise RuntimeError("engine fell over")

    with MicroBatcher(boom, max_batch=8, max_delay_ms=20) as b:
        futures = [b.submit(np.zeros((1, 1))) for _ in range(3)]
        for f in futures:
            with pytest.raises(RuntimeError, match="fell over"):
                f.result(5)


def test_oversized_request_runs_alone():
    with MicroBatcher(_double, max_batch=4, max_delay_ms=1) as b:
        y = b(np.ones((10, 2)), timeout=5)
    assert y.shape == (10, 2) and (y == 2).all()


def test_a_cheap_request_does_not_wait_behind_an_expensive_one():
    """One big request is run chunk by chunk; a request for one row joins the next batch."""
    order = []

    def fn(x):
        order.append(len(x))
        time.sleep(0.01)
        return x * 2

    with MicroBatcher(fn, max_batch=8, max_delay_ms=0, max_queue=1000) as b:
        gate = b.submit(np.ones((8, 1)))  # keeps the worker busy while the others queue
        big = b.submit(np.ones((80, 1)))
        time.sleep(0.001)
        small = b.submit(np.full((1, 1), 3.0))
        assert small.result(5)[0, 0] == 6.0
        assert not big.done()  # answered long before the big one finished
        assert (big.result(5) == 2).all() and big.result(5).shape == (80, 1)
        gate.result(5)
    assert max(order) <= 8 and sum(order) == 89


def test_the_queue_is_bounded_in_rows_not_requests():
    gate = threading.Event()
    b = MicroBatcher(lambda x: (gate.wait(5), x)[1], max_batch=4, max_delay_ms=0, max_queue=10)
    b.submit(np.zeros((4, 1)))
    time.sleep(0.05)  # the worker holds those 4 rows
    b.submit(np.zeros((8, 1)))
    with pytest.raises(Overloaded, match="8 rows waiting, limit 10"):
        b.submit(np.zeros((3, 1)))
    b.submit(np.zeros((2, 1)))  # still fits
    gate.set()
    b.close()

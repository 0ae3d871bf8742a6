"""The store's and the scheduler's lock hand over in arrival order (issue 14 item 3)."""

from __future__ import annotations

import threading
import time

from sharedml.platform.store.fair_lock import FairRLock


def test_waiters_get_the_lock_in_the_order_they_came() -> None:
    """The scheduler's tick takes the lock once per job in a tight loop; the node service's
    heartbeats and the API's writes queued behind it must get their turn, in order
    (threading.RLock promises no order, and a thread asking again at once usually wins)."""
    lock, order = FairRLock(), []
    lock.acquire()
    waiters = []
    for i in range(6):
        t = threading.Thread(target=lambda i=i: (lock.acquire(), order.append(i), lock.release()))
        t.start()
        deadline = time.monotonic() + 5
        while len(lock._queue) < i + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        waiters.append(t)
    lock.release()
    lock.acquire()  # the releasing thread asks again at once: it goes last
    order.append(99)
    lock.release()
    for t in waiters:
        t.join(5)
    assert order == [0, 1, 2, 3, 4, 5, 99]


def test_reentrant_timeout_and_owner_checks() -> None:
    lock = FairRLock()
    with lock, lock:
        assert lock.owned()
        result: list[bool] = []
        other = threading.Thread(target=lambda: result.append(lock.acquire(timeout=0.05)))
        other.start()
        other.join(5)
        assert result == [False]  # timed out, and left the queue
    assert not lock.owned()
    assert lock.acquire(timeout=0.05)
    lock.release()
    try:
        lock.release()
    except RuntimeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a release without holding the lock passed")

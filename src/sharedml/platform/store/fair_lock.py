"""A re-entrant lock handed to its waiters in the order they came (FIFO).

``threading.RLock`` is not fair: a thread that releases it and asks again at
once (the scheduler's tick, one short transaction per job) usually gets it
back before a waiter wakes, so the node service's heartbeats and the API's
writes starved behind a tick over 200 jobs, and healthy nodes were failed for
silence (bench/load.py, issue 14 item 3). Here a released lock goes to the
longest waiter.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from types import TracebackType


class FairRLock:
    """Re-entrant; ``acquire(timeout)`` like ``threading.RLock``; FIFO among waiters."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[object] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._queue:
                self._owner, self._depth = me, 1
                return True
            if not blocking:
                return False
            return self._wait_turn(me, None if timeout < 0 else time.monotonic() + timeout)

    def _wait_turn(self, me: int, deadline: float | None) -> bool:
        ticket = object()
        self._queue.append(ticket)
        while not (self._owner is None and self._queue[0] is ticket):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in line may be free to go now
                return False
            self._cond.wait(remaining)
        self._queue.popleft()
        self._owner, self._depth = me, 1
        return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a FairRLock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def owned(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> FairRLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

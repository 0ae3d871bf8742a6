"""Run curve batches on every core and stream them through a bounded pipeline.

A :class:`CurvePool` is a thread or process pool or, for small inputs, an
inline executor with the same interface. :func:`pipeline`
feeds batches to the pool from one thread and delivers results in order from
another, holding at most ``window`` batches in flight, so memory stays bounded
however many ids there are.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any


class _Inline(Executor):
    """Runs each task at submit time (no worker processes)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


class CurvePool:
    """Where curve batches run: ``workers`` threads or processes, or inline when 0.

    Threads are the default: PyNaCl's cffi call releases the GIL for the
    scalar multiplication (about 30 µs), leaving only hashing and call
    overhead (about 8 µs per id) under the GIL, with no process start-up and no
    pickling; measured at 88-90% of the raw single-core X25519 rate per
    CPU-second with both parties busy (``bench/psi.py``). ``processes=True``
    uses a process pool instead; its workers start through ``forkserver`` so
    a process that already runs gRPC threads is never forked. It also runs
    inside a :func:`sharedml.standalone.run_in_processes` party (not a daemonic process).
    """

    def __init__(self, workers: int | None = None, *, processes: bool = False) -> None:
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._executor: Executor
        if self.workers <= 0:
            self._executor = _Inline()
        elif processes:
            ctx = multiprocessing.get_context("forkserver")
            self._executor = ProcessPoolExecutor(self.workers, mp_context=ctx)
        else:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="psi-curve")

    @property
    def window(self) -> int:
        """Batches in flight per stream: enough to keep every worker busy."""
        return max(2, 2 * self.workers)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._executor.submit(fn, *args)

    def close(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> CurvePool:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.close(wait=exc_type is None)


def pipeline(
    pool: CurvePool,
    fn: Callable[[bytes, bytes], bytes],
    key: bytes,
    source: Iterable[bytes],
    sink: Callable[[int, bytes], None],
) -> None:
    """``sink(i, fn(key, item_i))`` for each item of ``source``, in order.

    ``source`` is consumed on a helper thread (it may block on a channel),
    results are delivered on the calling thread; an error on either side is
    raised here.
    """
    pending: queue.Queue[tuple[int, Future[Any]] | None] = queue.Queue(maxsize=pool.window)
    failure: list[BaseException] = []
    stop = threading.Event()

    def feed() -> None:
        try:
            for i, item in enumerate(source):
                if stop.is_set():
                    return
                pending.put((i, pool.submit(fn, key, item)))
        except BaseException as exc:  # re-raised on the calling thread
            failure.append(exc)
        finally:
            pending.put(None)

    feeder = threading.Thread(target=feed, name="psi-feed", daemon=True)
    feeder.start()
    try:
        while (entry := pending.get()) is not None:
            i, fut = entry
            sink(i, fut.result())
    except BaseException:
        # Let a feeder blocked on the full queue see ``stop``; it is a daemon
        # thread, so one still blocked on its source cannot hang the caller.
        stop.set()
        while True:
            try:
                pending.get_nowait()
            except queue.Empty:
                break
        raise
    feeder.join()
    if failure:
        raise failure[0]

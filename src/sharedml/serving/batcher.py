"""Micro-batching of concurrent requests on the gateway's event loop.

A request that finds its key idle (nothing queued, nothing in flight) is a
batch of one, run at once in the request's own task: a lone request pays no
hand-off to another task. Otherwise it adds its rows and a future, and a flush
is scheduled with ``call_soon``, so every request whose handler is already
runnable joins the batch before it leaves; under load a batch forms while the
previous ones are in flight (at most ``max_inflight`` per key). A batch holds
one key (the model version) and at most ``max_rows`` rows; each request gets
its own slice of the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Item:
    ids: list[str]
    X: np.ndarray | None
    future: asyncio.Future[Any]


@dataclass
class _Queue:
    items: list[Item] = field(default_factory=list)
    inflight: int = 0


#: run(key, items) -> one result per item
RunBatch = Callable[[str, list[Item]], Awaitable[list[Any]]]


class MicroBatcher:
    def __init__(self, run: RunBatch, max_rows: int = 1024, max_inflight: int = 4) -> None:
        self._run = run
        self.max_rows = max_rows
        self.max_inflight = max_inflight
        self._queues: dict[str, _Queue] = {}
        self._scheduled = False
        self.batches = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: str, ids: list[str], X: np.ndarray | None) -> Any:
        loop = asyncio.get_running_loop()
        item = Item(ids, X, loop.create_future())
        q = self._queues.setdefault(key, _Queue())
        if not q.items and not q.inflight:  # idle: a batch of one, in this task
            q.inflight += 1
            self.batches += 1
            await self._one(key, q, [item])
            return item.future.result()
        q.items.append(item)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await item.future

    def _flush(self) -> None:
        self._scheduled = False
        for key, q in self._queues.items():
            while q.items and q.inflight < self.max_inflight:
                batch: list[Item] = []
                rows = 0
                while q.items and (not batch or rows + len(q.items[0].ids) <= self.max_rows):
                    rows += len(q.items[0].ids)
                    batch.append(q.items.pop(0))
                q.inflight += 1
                self.batches += 1
                task = asyncio.ensure_future(self._one(key, q, batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _one(self, key: str, q: _Queue, batch: list[Item]) -> None:
        try:
            results = await self._run(key, batch)
        except Exception as exc:  # every request of the batch gets the batch's error
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        else:
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    if isinstance(result, BaseException):
                        item.future.set_exception(result)
                    else:
                        item.future.set_result(result)
        finally:
            q.inflight -= 1
            if q.items and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

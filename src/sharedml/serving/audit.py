"""Each serving party's own audit log of prediction requests (9.4-8).

Every scoring request is one JSON line in ``audit.jsonl`` at the party that
served it — the gateway at the label holder, the serving node at each
partner — naming the time, the caller or partners, the model version, the
outcome and each id **as a keyed hash** (BLAKE2b-128 under a subkey of the
node key: the log does not list customers, yet the node can find a given id
with :meth:`ServingAudit.id_hash`). Features and scores are never written.

Lines are hash-chained (``prev`` holds the SHA-256 of the previous line), so
an edit or a deletion inside the log shows in :func:`verify_chain`.

Writing is off the request path: :meth:`record` puts the entry on a bounded
queue and returns; one writer thread, woken by the first entry of a batch,
lets the batch gather for ``window`` seconds (10 ms), then hashes the ids,
writes every entry queued so far in one append and ``fsync``s it (a group
commit: one wake-up and one disk flush per batch, not per request — a lone
request every millisecond would otherwise cost ~0.2 ms of CPU in the writer).
When the queue is full, :meth:`record` waits for the
writer rather than drop an entry — a slow disk slows serving, it never thins
the log. :meth:`close` (on SIGTERM/SIGINT at both serving processes) ends the
window at once, drains the queue and syncs before it returns, so a normal stop
loses nothing; a crash (SIGKILL, power loss) loses at most the entries of the
last window and those queued since. If the writer fails (a
full disk, a lost permission), every later :meth:`record` raises a
:class:`DataError` naming the log and the cause, so the request is refused
rather than served unaudited, and nothing waits on a writer that is gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sharedml.errors import DataError
from sharedml.modelpart.keys import NodeKeys

_GENESIS = "0" * 64
_STOP = object()
QUEUE_LIMIT = 10_000  # entries waiting for the writer before record() waits
WINDOW = 0.01  # seconds a batch gathers after its first entry before it is written


class ServingAudit:
    def __init__(self, path: Path, key: NodeKeys, clock: Callable[[], float] = time.time,
                 limit: int = QUEUE_LIMIT, window: float = WINDOW) -> None:
        self.path = Path(path)
        self._id_key = key.derive("sharedml serving audit id-hash v1")
        self._clock = clock
        self._prev = _last_hash(self.path)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=limit)
        self._failure: OSError | None = None
        self._window = window
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="serving-audit", daemon=True)
        self._thread.start()

    def id_hash(self, id_: str) -> str:
        return hashlib.blake2b(id_.encode(), key=self._id_key, digest_size=16).hexdigest()

    def record(self, event: str, ids: list[str], **fields: Any) -> None:
        """Queue one entry (waits while the queue is full); ids are hashed on the writer.

        Raises :class:`DataError` once the writer has failed: no request goes unaudited."""
        entry = (self._clock(), event, ids, fields)
        while True:
            self._check_writer()
            try:
                self._queue.put(entry, timeout=0.5)
                return
            except queue.Full:
                continue

    def _check_writer(self) -> None:
        if self._failure is not None or not self._thread.is_alive():
            cause = self._failure.strerror if self._failure is not None else "the writer stopped"
            raise DataError(f"the serving audit log {self.path} cannot be written ({cause})",
                            step="serve: audit",
                            remedy="free disk space or fix the log's permissions, then restart "
                                   "the serving process; requests are refused until then")

    def close(self) -> None:
        """Write and sync every entry queued so far, then stop the writer."""
        if self._thread.is_alive():
            self._closing.set()
            self._queue.put(_STOP)
            self._thread.join()

    def _write_loop(self) -> None:
        try:
            self._write_batches()
        except OSError as exc:
            self._failure = exc

    def _write_batches(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            while True:
                item = self._queue.get()
                if item is not _STOP:
                    self._closing.wait(self._window)  # let the batch gather
                lines = []
                while item is not _STOP:
                    lines.append(self._line(*item))
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if lines:
                    fh.write("".join(lines))
                    fh.flush()
                    os.fsync(fh.fileno())
                if item is _STOP:
                    return

    def _line(self, at: float, event: str, ids: list[str], fields: dict[str, Any]) -> str:
        entry = {"at": round(at, 6), "event": event, "ids": [self.id_hash(i) for i in ids],
                 **fields, "prev": self._prev}
        line = json.dumps(entry, sort_keys=True, separators=(",", ":"))
        self._prev = hashlib.sha256(line.encode()).hexdigest()
        return line + "\n"


def _last_hash(path: Path) -> str:
    if not path.exists() or path.stat().st_size == 0:
        return _GENESIS
    with path.open("rb") as fh:
        fh.seek(max(path.stat().st_size - 65536, 0))
        last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return hashlib.sha256(last).hexdigest()


def verify_chain(path: Path) -> list[dict[str, Any]]:
    """The log's entries, after checking every ``prev`` link; raises :class:`DataError`."""
    prev, entries = _GENESIS, []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        entry = json.loads(line)
        if entry.get("prev") != prev:
            raise DataError(f"audit log {path} is broken at line {n}",
                            step="serve: audit", remedy="the log was edited or truncated")
        prev = hashlib.sha256(line.encode()).hexdigest()
        entries.append(entry)
    return entries

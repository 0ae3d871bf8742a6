"""A bounded cache of partners' answers at the gateway (off by default).

FATE-Serving's remote-result cache, without Redis: ``(version, partner, id)``
maps to that partner's contribution row (its ring-encoded partial score, or
its packed split sides) until ``ttl`` seconds pass; the least recently used
entry goes when ``capacity`` is reached. A hit spares a round trip but serves
a partner's answer from up to ``ttl`` seconds ago — turn it on only where a
partner's features change more slowly than that.

At rest (:meth:`RemoteCache.save` on shutdown, :meth:`RemoteCache.load` at
start) the entries are sealed with the node key (AES-256-GCM, file mode
0600): the partners' answers are the label holder's view of their data and
never lie on disk in the clear. Expiry uses wall-clock time so it holds
across a restart.
"""

from __future__ import annotations

import io
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sharedml.errors import ConfigError, DataError
from sharedml.modelpart.keys import NodeKeys

_AAD = b"sharedml serving cache v1"


class RemoteCache:
    def __init__(self, capacity: int, ttl: float, clock: Callable[[], float] = time.time) -> None:
        if capacity < 1 or ttl <= 0:
            raise ConfigError("the cache needs a capacity >= 1 and a ttl > 0",
                              step="serve: cache")
        self.capacity, self.ttl, self._clock = capacity, ttl, clock
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, version: str, party: str, ids: list[str]) -> list[np.ndarray | None]:
        now = self._clock()
        out: list[np.ndarray | None] = []
        for i in ids:
            key = (version, party, i)
            hit = self._entries.get(key)
            if hit is not None and hit[0] > now:
                self._entries.move_to_end(key)
                out.append(hit[1])
            else:
                if hit is not None:
                    del self._entries[key]
                out.append(None)
        return out

    def put(self, version: str, party: str, ids: list[str], rows: np.ndarray) -> None:
        expires = self._clock() + self.ttl
        for i, row in zip(ids, rows, strict=True):
            self._entries[(version, party, i)] = (expires, np.array(row))
            self._entries.move_to_end((version, party, i))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def save(self, path: Path, key: NodeKeys) -> None:
        """Seal the live entries to ``path`` (mode 0600)."""
        now = self._clock()
        live = [(k, v) for k, v in self._entries.items() if v[0] > now]
        rows = [v[1] for _, v in live]
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(["\x1f".join(k) for k, _ in live], dtype=str),
                 expires=np.array([v[0] for _, v in live], dtype=np.float64),
                 wide=np.array([r.ndim == 1 for r in rows], dtype=bool),
                 lengths=np.array([r.nbytes for r in rows], dtype=np.int64),
                 blob=np.frombuffer(b"".join(r.tobytes() for r in rows), dtype=np.uint8))
        sealed = key.seal(buf.getvalue(), _AAD)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(sealed)

    def load(self, path: Path, key: NodeKeys) -> int:
        """Read entries sealed by :meth:`save`; returns how many are still live."""
        if not Path(path).exists():
            return 0
        try:
            data = np.load(io.BytesIO(key.open(Path(path).read_bytes(), _AAD)),
                           allow_pickle=False)
        except DataError:
            raise
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cache file {path} is unreadable: {exc}",
                              step="serve: cache", remedy="delete it") from None
        now = self._clock()
        blob, at = data["blob"].tobytes(), 0
        for k, expires, wide, n in zip(data["keys"], data["expires"], data["wide"],
                                       data["lengths"], strict=True):
            chunk, at = blob[at:at + n], at + n
            if expires > now:
                row = (np.frombuffer(chunk, dtype=np.uint8) if wide
                       else np.frombuffer(chunk, dtype=np.uint64).reshape(()))
                version, party, id_ = str(k).split("\x1f")
                self._entries[(version, party, id_)] = (float(expires), row.copy())
        return len(self._entries)

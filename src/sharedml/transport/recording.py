"""A channel wrapper that records every message it sends, for wire audits.

Privacy tests (9.4-3, 9.4-8) wrap each party's channel in a
:class:`RecordingChannel`, run a protocol, then inspect :attr:`log`: every
value that left the party, with its sender, receiver and tag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharedml.transport.base import Channel
from sharedml.transport.codec import Value


@dataclass(frozen=True)
class WireRecord:
    frm: str
    to: str
    tag: str
    value: Value

    def as_bytes(self) -> bytes:
        return self.value if isinstance(self.value, bytes) else np.ascontiguousarray(self.value).tobytes()


class RecordingChannel(Channel):
    """Wraps ``inner``; appends a :class:`WireRecord` to ``log`` on every send."""

    def __init__(self, inner: Channel, log: list[WireRecord] | None = None) -> None:
        super().__init__(inner.party, inner.peers, inner.job, inner.timeout)
        self.inner = inner
        self.log: list[WireRecord] = [] if log is None else log

    def _send(self, to: str, tag: str, value: Value) -> None:
        copy = value if isinstance(value, bytes) else np.array(value, copy=True)
        self.log.append(WireRecord(self.party, to, tag, copy))
        self.inner._send(to, tag, value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        return self.inner._recv(frm, tag, timeout)

    def close(self) -> None:
        self.inner.close()

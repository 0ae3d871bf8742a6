"""What a party sends and receives, and how many rounds a protocol run took.

:class:`TrafficMeter` wraps a party's channel (like
:class:`~sharedml.transport.recording.RecordingChannel`, but keeping sizes
only) and logs every send and receive in the order the party made them.
:func:`rounds` replays every party's log to find the protocol's critical
path: a message sent after its sender last received message ``m`` is one
hop later than ``m``; consecutive sends with no receive between them are
the same hop (they travel in parallel). The longest chain of hops is the
number of one-way network delays the run cannot avoid — the term of its
time that grows with latency, ``rounds × rtt/2``.

A party that receives on several threads (a prefetching thread beside the
protocol) logs in the order the receives completed, which can only chain a
send after an unrelated receive: the count errs on the high side.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sharedml.errors import ConfigError
from sharedml.transport.base import Channel
from sharedml.transport.codec import Value


@dataclass(frozen=True)
class Event:
    kind: Literal["send", "recv"]
    peer: str
    tag: str
    nbytes: int
    #: seconds since the meter was made (when the send started or the receive returned)
    at: float = 0.0


def _size(value: Value) -> int:
    return len(value) if isinstance(value, bytes) else int(value.nbytes)


class TrafficMeter(Channel):
    """Wraps ``inner``; :attr:`events` lists this party's sends and receives, sizes only."""

    def __init__(self, inner: Channel) -> None:
        super().__init__(inner.party, inner.peers, inner.job, inner.timeout)
        self.inner = inner
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def _send(self, to: str, tag: str, value: Value) -> None:
        with self._lock:
            self.events.append(
                Event("send", to, tag, _size(value), time.monotonic() - self._start)
            )
        self.inner._send(to, tag, value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        value = self.inner._recv(frm, tag, timeout)
        with self._lock:
            self.events.append(
                Event("recv", frm, tag, _size(value), time.monotonic() - self._start)
            )
        return value

    def close(self) -> None:
        self.inner.close()

    def sent_bytes(self) -> dict[str, int]:
        """Payload bytes this party sent, per receiver."""
        out: Counter[str] = Counter()
        for e in self.events:
            if e.kind == "send":
                out[e.peer] += e.nbytes
        return dict(out)


def rounds(logs: Mapping[str, Sequence[Event]]) -> int:
    """The longest chain of dependent messages in a run (see the module doc).

    ``logs`` holds every party's events in its own order. Raises
    :class:`ConfigError` when a party received a message nobody logged sending.
    """
    hop: dict[tuple[str, str, str, int], int] = {}
    sent: Counter[tuple[str, str, str]] = Counter()
    got: Counter[tuple[str, str, str]] = Counter()
    clock: dict[str, int] = defaultdict(int)
    at = {party: 0 for party in logs}
    moved = True
    while moved:
        moved = False
        for party, events in logs.items():
            while at[party] < len(events):
                e = events[at[party]]
                if e.kind == "send":
                    key = (party, e.peer, e.tag)
                    hop[(*key, sent[key])] = clock[party] + 1
                    sent[key] += 1
                else:
                    key = (e.peer, party, e.tag)
                    message = (*key, got[key])
                    if message not in hop:
                        break  # its sender has not got that far yet
                    clock[party] = max(clock[party], hop[message])
                    got[key] += 1
                at[party] += 1
                moved = True
    stuck = [p for p, events in logs.items() if at[p] < len(events)]
    if stuck:
        raise ConfigError(f"parties {stuck} received messages no log shows being sent")
    return max(hop.values(), default=0)


def link_bytes(logs: Mapping[str, Sequence[Event]]) -> dict[tuple[str, str], int]:
    """Payload bytes per directed link ``(sender, receiver)``."""
    out: Counter[tuple[str, str]] = Counter()
    for party, events in logs.items():
        for e in events:
            if e.kind == "send":
                out[(party, e.peer)] += e.nbytes
    return dict(out)

"""The Channel seam: protocol code is written once against it (STYLE.md 2).

A :class:`Channel` belongs to one party in one job. ``send(to, tag, value)``
and ``recv(frm, tag)`` move numpy arrays or bytes; messages under the same
(sender, tag) arrive in the order sent, while different tags may arrive in
any order. Tags are namespaced by the job id and by :meth:`Channel.scope`, so
concurrent jobs and steps never mix.

Implementations: :class:`~sharedml.transport.local.LocalChannel` (threads in
one process) and :class:`~sharedml.transport.grpc.GrpcChannel` (processes
or hosts, mutual TLS).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable

from sharedml.errors import ChannelError, ConfigError, PeerTimeout
from sharedml.transport.codec import Value

DEFAULT_TIMEOUT = 120.0


class Mailbox:
    """Messages received by one party, keyed by (job, sender, tag).

    Thread-safe. A receiver waits on a condition until its key has a message,
    the timeout passes (:class:`PeerTimeout`) or the sender is declared failed
    (:class:`ChannelError`), so a dead peer never causes a hang.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._cond = threading.Condition()
        self._queues: dict[tuple[str, str, str], deque[Value]] = {}
        self._failed: dict[tuple[str, str], ChannelError] = {}

    def put(self, job: str, frm: str, tag: str, value: Value) -> None:
        with self._cond:
            self._queues.setdefault((job, frm, tag), deque()).append(value)
            self._cond.notify_all()

    def fail(self, job: str, frm: str, error: ChannelError) -> None:
        """Wake every receiver waiting on ``frm`` in ``job`` with ``error``."""
        with self._cond:
            self._failed[(job, frm)] = error
            self._cond.notify_all()

    def get(self, job: str, frm: str, tag: str, timeout: float) -> Value:
        key = (job, frm, tag)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                queue = self._queues.get(key)
                if queue:
                    value = queue.popleft()
                    if not queue:
                        del self._queues[key]
                    return value
                failed = self._failed.get((job, frm)) or self._failed.get(("*", frm))
                if failed is not None:
                    raise failed
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerTimeout(
                        f"no message from {frm!r} under tag {tag!r} within {timeout:g} s",
                        party=self.owner,
                        step=tag,
                        remedy=f"check that party {frm!r} is running and reached this step",
                    )
                self._cond.wait(remaining)

    def pending(self, job: str | None = None) -> int:
        """How many received messages nobody has read yet (for leak checks)."""
        with self._cond:
            return sum(len(q) for (j, _, _), q in self._queues.items() if job in (None, j))


class Channel(ABC):
    """One party's connection to the other parties of one job."""

    def __init__(
        self, party: str, peers: Iterable[str], job: str, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.party = party
        self.peers = tuple(peers)
        self.job = job
        self.timeout = timeout
        if party not in self.peers:
            raise ConfigError(f"party {party!r} is not among the channel's peers {self.peers}")

    # -- implemented by transports -------------------------------------------------
    @abstractmethod
    def _send(self, to: str, tag: str, value: Value) -> None: ...

    @abstractmethod
    def _recv(self, frm: str, tag: str, timeout: float) -> Value: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the transport's resources."""

    # -- the protocol-facing API ---------------------------------------------------
    def send(self, to: str, tag: str, value: Value) -> None:
        """Send ``value`` (a numpy array or bytes) to party ``to`` under ``tag``."""
        self._check_peer(to)
        self._send(to, tag, value)

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> Value:
        """The next value ``frm`` sent under ``tag``; raises :class:`PeerTimeout`."""
        self._check_peer(frm)
        return self._recv(frm, tag, self.timeout if timeout is None else timeout)

    def broadcast(self, tag: str, value: Value) -> None:
        """Send ``value`` to every other party."""
        for peer in self.peers:
            if peer != self.party:
                self._send(peer, tag, value)

    def gather(self, tag: str, value: Value, root: str) -> dict[str, Value] | None:
        """Every party's ``value`` at ``root`` (keyed by party); ``None`` elsewhere."""
        if self.party != root:
            self.send(root, tag, value)
            return None
        return {
            p: value if p == self.party else self._recv(p, tag, self.timeout) for p in self.peers
        }

    def all_gather(self, tag: str, value: Value) -> dict[str, Value]:
        """Every party's ``value`` at every party."""
        self.broadcast(tag, value)
        return {
            p: value if p == self.party else self._recv(p, tag, self.timeout) for p in self.peers
        }

    def scope(self, name: str) -> Channel:
        """A view whose tags are prefixed with ``name/`` (one per step or sub-protocol)."""
        return ScopedChannel(self, name)

    def _check_peer(self, other: str) -> None:
        if other == self.party:
            raise ChannelError(f"party {self.party!r} cannot message itself", party=self.party)
        if other not in self.peers:
            raise ChannelError(
                f"{other!r} is not a peer of job {self.job!r} (peers: {list(self.peers)})",
                party=self.party,
            )


class ScopedChannel(Channel):
    """A channel that prefixes every tag, sharing the parent's transport."""

    def __init__(self, parent: Channel, prefix: str) -> None:
        super().__init__(parent.party, parent.peers, parent.job, parent.timeout)
        self._parent = parent
        self._prefix = prefix

    def _send(self, to: str, tag: str, value: Value) -> None:
        self._parent._send(to, f"{self._prefix}/{tag}", value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        return self._parent._recv(frm, f"{self._prefix}/{tag}", timeout)

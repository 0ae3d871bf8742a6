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

import re
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable

from sharedml.errors import ChannelError, ConfigError, PeerTimeout
from sharedml.transport.codec import Value

DEFAULT_TIMEOUT = 120.0
#: Longest tag (scope prefixes included), in UTF-8 bytes.
MAX_TAG = 1024
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_tag(party: str, tag: str) -> bytes:
    """``tag`` as UTF-8 if it may name a message: text of at most MAX_TAG bytes, no control characters.

    Raises :class:`ChannelError` naming ``party`` otherwise (tags come from
    protocol code, so this is a programming mistake, caught before sending).
    """
    problem = None
    raw = b""
    if not isinstance(tag, str):
        problem = f"a tag must be a str, not {type(tag).__name__}"
    elif _CONTROL.search(tag):
        problem = f"tag {tag!r} contains control characters"
    else:
        try:
            raw = tag.encode()
        except UnicodeEncodeError:
            problem = f"tag {tag!r} is not valid Unicode text"
        else:
            if len(raw) > MAX_TAG:
                problem = f"tag of {len(raw)} bytes is longer than {MAX_TAG}"
    if problem is not None:
        raise ChannelError(problem, party=party, remedy="name messages with short printable tags")
    return raw


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (refused in tags and job ids)."""
    return _CONTROL.search(text) is not None


class Mailbox:
    """Messages received by one party, keyed by (job, sender, tag).

    Thread-safe. A receiver waits on a condition until its key has a message,
    the timeout passes (:class:`PeerTimeout`) or the sender is declared failed
    (:class:`ChannelError`), so a dead peer never causes a hang.

    With a ``budget`` (bytes), what each (job, sender) has sent and nobody
    has read yet is bounded: the transport reserves a value's size
    before it allocates the value, and waits (back-pressure on the sender's
    stream) while that sender's unread values already fill the budget. A
    value always gets in when nothing of its sender is unread, so the largest
    value the transport accepts must not exceed the budget. Each value is
    charged :data:`VALUE_OVERHEAD` bytes besides its payload and tag, so a
    flood of tiny values is bounded too. Without a budget (in-process
    parties, who trust each other's memory use) nothing is bounded.
    """

    #: What one queued value costs beyond its payload and tag: its objects and,
    #: for a value under a new tag, the tag's queue (about 970 bytes measured).
    VALUE_OVERHEAD = 1024

    def __init__(self, owner: str, budget: int | None = None) -> None:
        self.owner = owner
        self.budget = budget
        self._cond = threading.Condition()
        self._queues: dict[tuple[str, str, str], deque[tuple[Value, int]]] = {}
        self._failed: dict[tuple[str, str], ChannelError] = {}
        self._unread: dict[tuple[str, str], int] = {}
        self._closed = False

    @classmethod
    def charge(cls, tag: str, nbytes: int) -> int:
        """What a value of ``nbytes`` under ``tag`` counts against its sender's budget."""
        return nbytes + len(tag) + cls.VALUE_OVERHEAD

    def try_reserve(self, job: str, frm: str, charge: int) -> bool:
        """Take ``charge`` bytes of ``frm``'s budget in ``job`` if they are free now."""
        with self._cond:
            return self._take(job, frm, charge)

    def reserve(
        self, job: str, frm: str, charge: int, alive: Callable[[], bool], poll: float = 0.5
    ) -> bool:
        """Wait until ``charge`` bytes of ``frm``'s budget in ``job`` are free and take them.

        Returns False (taking nothing) once the mailbox is closed or ``alive()``
        turns false (the sender's stream ended), checked every ``poll`` seconds.
        """
        with self._cond:
            while not self._take(job, frm, charge):
                if self._closed or not alive():
                    return False
                self._cond.wait(poll)
            return True

    def _take(self, job: str, frm: str, charge: int) -> bool:
        if self._closed:
            return False
        used = self._unread.get((job, frm), 0)
        if self.budget is not None and used and used + charge > self.budget:
            return False
        self._unread[(job, frm)] = used + charge
        return True

    def release(self, job: str, frm: str, charge: int) -> None:
        """Give back a reservation whose value never arrived."""
        with self._cond:
            self._give_back(job, frm, charge)
            self._cond.notify_all()

    def _give_back(self, job: str, frm: str, charge: int) -> None:
        if not charge:
            return
        left = self._unread.get((job, frm), 0) - charge
        if left > 0:
            self._unread[(job, frm)] = left
        else:
            self._unread.pop((job, frm), None)

    @property
    def closed(self) -> bool:
        return self._closed

    def unread_bytes(self, job: str, frm: str) -> int:
        """Bytes ``frm`` has reserved or queued in ``job`` that nobody has read yet."""
        with self._cond:
            return self._unread.get((job, frm), 0)

    def put(self, job: str, frm: str, tag: str, value: Value, charge: int = 0) -> None:
        """File ``value``; ``charge`` is what :meth:`reserve` took for it (0: none)."""
        with self._cond:
            if self._closed:
                self._give_back(job, frm, charge)
                return
            self._queues.setdefault((job, frm, tag), deque()).append((value, charge))
            self._cond.notify_all()

    def close(self) -> None:
        """Drop everything unread and refuse further values (the job is over here)."""
        with self._cond:
            self._closed = True
            self._queues.clear()
            self._unread.clear()
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
                    value, charge = queue.popleft()
                    if not queue:
                        del self._queues[key]
                    if charge:
                        self._give_back(job, frm, charge)
                        self._cond.notify_all()  # a sender may wait for this room
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

"""Two roles of one protocol in one party's process: a pair of views of its channel.

A data party named as a horizontal step's aggregator is both a client and
the server of :mod:`sharedml.fl.secagg` (and of the protocols built on it).
Each role runs in its own thread with one view of :class:`LoopbackPair`:
a message a view sends to its own party lands in the *other* view's mailbox,
and everything else goes through the party's real channel. So the protocols
stay written once against :class:`~sharedml.transport.base.Channel`, the
client role's messages to the server role never leave the process, and a
role never reads its own messages back (the pair keeps one mailbox per
direction). Values are copied through the wire codec, as
:class:`~sharedml.transport.local.LocalChannel` does, so what one role keeps
the other cannot change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sharedml.errors import ChannelError
from sharedml.transport import codec
from sharedml.transport.base import Channel, Mailbox, ScopedChannel
from sharedml.transport.codec import Value

A = TypeVar("A")
B = TypeVar("B")


class _SelfAllowed(Channel):
    """A view that may address its own party (the other role of the pair)."""

    def _check_peer(self, other: str) -> None:
        if other != self.party:
            super()._check_peer(other)

    def scope(self, name: str) -> Channel:
        return _ScopedLoop(self, name)


class _ScopedLoop(_SelfAllowed, ScopedChannel):
    """A scoped view of a loopback view (tags prefixed, self-addressing kept)."""


class LoopbackView(_SelfAllowed):
    """One role's channel: to itself through the pair, to anyone else through ``inner``."""

    def __init__(self, inner: Channel, own: Mailbox, other: Mailbox) -> None:
        super().__init__(inner.party, inner.peers, inner.job, inner.timeout)
        self._inner, self._own, self._other = inner, own, other

    def _send(self, to: str, tag: str, value: Value) -> None:
        if to != self.party:
            self._inner._send(to, tag, value)
            return
        header, payload = codec.encode(value)
        self._other.put(self.job, self.party, tag, codec.decode(header, bytearray(payload)))

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        if frm != self.party:
            return self._inner._recv(frm, tag, timeout)
        return self._own.get(self.job, self.party, tag, timeout)


class LoopbackPair:
    """The two views of ``inner`` that a party's two roles use (see the module doc)."""

    def __init__(self, inner: Channel) -> None:
        a, b = Mailbox(inner.party), Mailbox(inner.party)
        self.first = LoopbackView(inner, a, b)
        self.second = LoopbackView(inner, b, a)
        self._boxes = (a, b)

    def fail(self, error: ChannelError) -> None:
        """Wake either role waiting on the other with ``error`` (the other has ended)."""
        for box in self._boxes:
            box.fail("*", self.first.party, error)


def run_both(
    inner: Channel, here: Callable[[Channel], A], beside: Callable[[Channel], B], name: str
) -> tuple[A, B]:
    """``here(view)`` in this thread and ``beside(other view)`` in a thread called ``name``,
    on a :class:`LoopbackPair` of ``inner``; both results, or the first error (the side
    that failed wakes the other, which would otherwise wait for it)."""
    pair = LoopbackPair(inner)
    done: dict[str, Any] = {}

    def side() -> None:
        try:
            done["result"] = beside(pair.second)
        except BaseException as exc:  # handed to the caller's thread below
            done["error"] = exc
            pair.fail(ChannelError(f"{name} stopped: {exc}", party=inner.party))

    thread = threading.Thread(target=side, name=name, daemon=True)
    thread.start()
    try:
        mine = here(pair.first)
    except BaseException as exc:
        pair.fail(ChannelError(f"the side beside {name} stopped: {exc}", party=inner.party))
        thread.join()
        raise done.get("error", exc) from None
    thread.join()
    if "error" in done:
        raise done["error"]
    return mine, done["result"]

"""A step's deadline on its channel: no receive waits past the time the step may take.

A party that waits for a peer which never sends (a peer that does not run the
step, one that hangs, one that vanished without closing its stream) would
otherwise wait a full receive timeout per message, and a step of many
messages many times that. :class:`StepDeadline` wraps a party's channel for
one step: each receive waits at most until the step's deadline, and one past
it raises :class:`~sharedml.errors.StepTimeout` naming the step, the party and
the peer it was waiting for. ``sharedml run --step-timeout`` and the node
agents (a task order's ``step_timeout_s``) wrap every step's channel in one.
"""

from __future__ import annotations

import time

from sharedml.errors import PeerTimeout, StepTimeout
from sharedml.transport.base import Channel
from sharedml.transport.codec import Value


class StepDeadline(Channel):
    """``inner`` for one step, whose receives end at ``limit`` seconds from now."""

    def __init__(self, inner: Channel, step: str, limit: float) -> None:
        super().__init__(inner.party, inner.peers, inner.job, inner.timeout)
        self._inner = inner
        self.step = step
        self.limit = limit
        self.deadline = time.monotonic() + limit

    def _send(self, to: str, tag: str, value: Value) -> None:
        self._inner._send(to, tag, value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.expired(frm)
        if timeout <= remaining:
            return self._inner._recv(frm, tag, timeout)
        try:
            return self._inner._recv(frm, tag, remaining)
        except PeerTimeout as exc:
            if isinstance(exc, StepTimeout) or time.monotonic() < self.deadline:
                raise
            raise self.expired(frm) from None

    def expired(self, waiting_for: str) -> StepTimeout:
        return StepTimeout(
            f"the step did not finish within its timeout of {self.limit:g} s "
            f"(still waiting for {waiting_for!r})",
            party=self.party, step=self.step,
            remedy=f"check that {waiting_for!r} runs this step; raise the step timeout if "
            "the step is only slow",
        )

    def close(self) -> None:
        self._inner.close()

"""A task's channel that stops promptly when the platform cancels the task."""

from __future__ import annotations

import threading
import time

from sharedml.errors import PeerTimeout, SharedMLError
from sharedml.transport.base import Channel
from sharedml.transport.codec import Value


class TaskCanceled(SharedMLError):
    """The platform canceled the task (the job was canceled or failed elsewhere)."""


class CancellableChannel(Channel):
    """A channel whose sends and waits stop promptly when the task is canceled."""

    def __init__(
        self, inner: Channel, cancel: threading.Event, timeout: float | None = None
    ) -> None:
        super().__init__(inner.party, inner.peers, inner.job, timeout or inner.timeout)
        self._inner, self._cancel = inner, cancel

    def _check(self) -> None:
        if self._cancel.is_set():
            raise TaskCanceled("the platform canceled this task", party=self.party)

    def _send(self, to: str, tag: str, value: Value) -> None:
        self._check()
        self._inner._send(to, tag, value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        deadline = time.monotonic() + timeout
        while True:
            self._check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerTimeout(
                    f"no message from {frm!r} under tag {tag!r} within {timeout:g} s",
                    party=self.party, step=tag,
                    remedy=f"check that party {frm!r} is running and reached this step",
                )
            try:
                return self._inner._recv(frm, tag, min(remaining, 0.25))
            except PeerTimeout:
                continue

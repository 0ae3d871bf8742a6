"""In-process transport: every party is a thread, messages are copied frames.

Values go through the same codec as on the wire, so a protocol that works
over :class:`LocalChannel` sends only what :class:`GrpcChannel` could. The
payload is copied exactly once (into the receiver's writable buffer); the
header is built and checked as on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable

from sharedml.errors import ChannelError, PeerUnreachable
from sharedml.transport import codec
from sharedml.transport.base import DEFAULT_TIMEOUT, Channel, Mailbox, check_tag
from sharedml.transport.codec import Value


class LocalHub:
    """The shared post office of one process: a mailbox per party."""

    def __init__(self, parties: Iterable[str]) -> None:
        self.mailboxes = {p: Mailbox(p) for p in parties}

    def channel(self, party: str, job: str = "job", timeout: float = DEFAULT_TIMEOUT) -> LocalChannel:
        return LocalChannel(self, party, tuple(self.mailboxes), job, timeout)

    def channels(self, job: str = "job", timeout: float = DEFAULT_TIMEOUT) -> dict[str, LocalChannel]:
        return {p: self.channel(p, job, timeout) for p in self.mailboxes}

    def fail_party(self, party: str, error: ChannelError) -> None:
        """Declare ``party`` dead: every receiver waiting on it gets ``error``."""
        for owner, box in self.mailboxes.items():
            if owner != party:
                box.fail("*", party, error)


class LocalChannel(Channel):
    """A party's channel inside one process."""

    def __init__(
        self, hub: LocalHub, party: str, peers: tuple[str, ...], job: str, timeout: float
    ) -> None:
        super().__init__(party, peers, job, timeout)
        self._hub = hub

    def _send(self, to: str, tag: str, value: Value) -> None:
        check_tag(self.party, tag)
        box = self._hub.mailboxes.get(to)
        if box is None:
            raise PeerUnreachable(f"no party {to!r} in this process", party=self.party, step=tag)
        header, payload = codec.encode(value)
        # one copy: the receiver owns a writable buffer, the sender may reuse its array
        box.put(self.job, self.party, tag, codec.decode(header, bytearray(payload)))

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        return self._hub.mailboxes[self.party].get(self.job, frm, tag, timeout)

"""Party-to-party transport over gRPC with mutual TLS (processes or hosts).

One :class:`GrpcEndpoint` (:mod:`~sharedml.transport.grpc_endpoint`) per
party process holds its mTLS
:class:`~sharedml.transport.grpc_server.PeerServer` (which receives for every
job) and one pooled connection per peer. :meth:`GrpcEndpoint.channel` gives a
:class:`GrpcChannel` for one job; it sends each peer its values over one
long-lived stream (values chunked per :mod:`~sharedml.transport.grpc_wire`)
and reads what peers sent from the job's mailbox, so out-of-order arrival
works and concurrent jobs never mix.

Both ends authenticate with certificates from the deployment CA
(:mod:`sharedml.crypto.pki`); a client checks that the server's certificate
names the peer it meant to reach (``grpc.ssl_target_name_override``), and the
server takes the sender's id from the client certificate only.

Rotation and revocation (:mod:`sharedml.transport.tls`): an endpoint built
on :class:`~sharedml.crypto.identity.IdentityFiles` serves and dials with
the pair on disk at each new connection; with a revocation list, its server
refuses a revoked sender's stream and it checks each peer's certificate
before connecting, pinning the connection to the certificate it checked.

Errors: a peer that cannot be reached (down, or failing TLS) after connect
retries with back-off raises :class:`PeerUnreachable`, as does a peer that
refuses the job; a receive that waits too long raises :class:`PeerTimeout`
naming peer and tag; a peer that dies mid-stream, or whose stream breaks,
raises :class:`ChannelError`; a malformed frame, :class:`FrameError`. A
send that waits too long because the peer holds this party's stream (it
has not read what this party already sent, see
:mod:`~sharedml.transport.grpc_server`) raises :class:`PeerTimeout` saying
so, with the peer, job and tag.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from typing import cast

import grpc

from sharedml.errors import (
    ChannelError,
    ConfigError,
    FrameError,
    PeerTimeout,
    PeerUnreachable,
)
from sharedml.transport import grpc_wire
from sharedml.transport.base import DEFAULT_TIMEOUT, Channel, check_tag, has_control
from sharedml.transport.codec import Value
from sharedml.transport.grpc_endpoint import GrpcEndpoint
from sharedml.transport.grpc_server import (
    ADMITTED,
    JOB_KEY,
    MAX_JOB,
    METHOD,
    RESUMED,
    STALLED,
    WIRE_KEY,
)

log = logging.getLogger("sharedml.transport.grpc")

#: Chunks queued per outgoing stream before ``send`` waits for the network.
QUEUE_DEPTH = 16
_END = object()


class _Requests:
    """The request iterator gRPC consumes: chunks from a bounded queue."""

    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.dead = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        while True:
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                if self.dead.is_set():
                    raise StopIteration from None
                continue
            if item is _END:
                raise StopIteration
            return cast(bytes, item)  # only bytes and _END are queued


class _Link:
    """The long-lived outgoing stream from this party to one peer in one job.

    A peer whose server is busy (``RESOURCE_EXHAUSTED``: too many streams
    open or waiting there) is asked again with back-off until the channel's
    admission time runs out.
    """

    def __init__(self, channel: GrpcChannel, peer: str, address: str) -> None:
        self.peer = peer
        self.party = channel.party
        self.job = channel.job
        self.chunk = channel.endpoint.chunk_bytes
        self._lock = threading.Lock()
        self._stalled: str | None = None
        conn = channel.endpoint.connection(peer, address)
        deadline = time.monotonic() + channel.admit_timeout
        delay = 0.05
        while True:
            self._open(conn)
            if not self._admitted.wait(max(deadline - time.monotonic(), 0)):
                self._abandon()
                raise PeerTimeout(
                    f"party {peer!r} did not admit a stream for job {self.job!r} within "
                    f"{channel.admit_timeout:g} s",
                    party=self.party,
                    remedy=f"check that {peer!r} has started job {self.job!r}",
                )
            busy = self._busy
            if busy is None or time.monotonic() + delay >= deadline:
                break
            log.debug("party %s: %s is busy (%s); retrying", self.party, peer, busy)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        self._raise_if_failed()

    def _open(self, conn: grpc.Channel) -> None:
        self._requests = _Requests()
        self._admitted = threading.Event()
        self._finished = threading.Event()
        self._error: ChannelError | None = None
        self._busy: str | None = None
        stream = conn.stream_stream(METHOD)
        self._call = stream(
            self._requests,
            metadata=((JOB_KEY, self.job), (WIRE_KEY, str(grpc_wire.VERSION))),
            wait_for_ready=True,
        )
        threading.Thread(
            target=self._read_replies,
            args=(self._call, self._requests, self._admitted, self._finished),
            daemon=True,
            name=f"link-{self.party}-{self.peer}",
        ).start()

    def _read_replies(
        self,
        call: grpc.Call,
        requests: _Requests,
        admitted: threading.Event,
        finished: threading.Event,
    ) -> None:
        try:
            for reply in call:
                if reply == ADMITTED:
                    admitted.set()
                elif reply.startswith(STALLED):
                    self._stalled = reply[len(STALLED) : len(STALLED) + 2000].decode(
                        errors="replace"
                    )
                elif reply == RESUMED:
                    self._stalled = None
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                self._busy = exc.details() or "busy"
            self._error = self._translate(exc)
        finally:
            requests.dead.set()
            finished.set()
            admitted.set()

    def _translate(self, exc: grpc.RpcError) -> ChannelError:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        where = {"party": self.party, "step": self.job}
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return FrameError(f"party {self.peer!r} rejected a frame: {details}", **where)
        if code in (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.UNAUTHENTICATED,
        ):
            return PeerUnreachable(f"party {self.peer!r} refused the stream: {details}", **where)
        return ChannelError(
            f"stream to party {self.peer!r} broke ({code.name if code else 'error'}: {details})",
            **where,
            remedy=f"check whether party {self.peer!r} is still running",
        )

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._finished.is_set():
            raise ChannelError(f"stream to party {self.peer!r} has ended", party=self.party)

    def send(self, tag: str, value: Value, timeout: float) -> None:
        with self._lock:
            for message in grpc_wire.messages(tag, value, self.chunk, self.party):
                self._put(message, tag, timeout)

    def _put(self, item: object, tag: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_failed()
            try:
                self._requests.queue.put(
                    item, timeout=min(0.25, max(deadline - time.monotonic(), 0))
                )
                return
            except queue.Full:
                if time.monotonic() >= deadline:
                    stalled = self._stalled
                    raise PeerTimeout(
                        f"party {self.peer!r} did not take a message under tag {tag!r} "
                        f"within {timeout:g} s"
                        + (f": it holds this stream because {stalled}" if stalled else ""),
                        party=self.party,
                        step=tag,
                        remedy=f"check that party {self.peer!r} is running and reads "
                        "what this party sends it",
                    ) from None

    def close(self, timeout: float) -> None:
        """Finish the stream and wait until the peer has filed everything sent."""
        with self._lock:
            if not self._finished.is_set():
                try:
                    self._put(grpc_wire.END_OF_STREAM, "(close)", timeout)
                    self._put(_END, "(close)", timeout)
                except PeerTimeout:
                    self._abandon()  # never leave the stream open at the peer
                    raise
            if not self._finished.wait(timeout):
                self._abandon()
                raise PeerTimeout(
                    f"party {self.peer!r} did not confirm this party's last messages "
                    f"within {timeout:g} s",
                    party=self.party,
                    step=self.job,
                )
        if self._error is not None:
            raise self._error

    def _abandon(self) -> None:
        self._requests.dead.set()
        self._call.cancel()


class GrpcChannel(Channel):
    """One party's channel for one job over gRPC with mutual TLS.

    Made by :meth:`GrpcEndpoint.channel`. A stream to a peer opens on the
    first send to it (or all at once with :meth:`connect`); with the
    endpoint's ``warm_links``, the first send or receive also starts opening
    the streams to every other peer in the background, so a connection's
    set-up (TCP, TLS and admission: about four round trips on a WAN) overlaps
    with this party's first computation or wait instead of following it.
    :meth:`close` waits until every peer has filed what this party sent.
    """

    def __init__(
        self,
        endpoint: GrpcEndpoint,
        job: str,
        peers: tuple[str, ...],
        addresses: Mapping[str, str],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(endpoint.party, peers, job, timeout)
        if not job or len(job) > MAX_JOB or not job.isascii() or has_control(job):
            raise ConfigError(
                f"job id {job[:80]!r} cannot travel over gRPC",
                party=self.party,
                remedy=f"use 1 to {MAX_JOB} printable ASCII characters",
            )
        missing = [p for p in self.peers if p != self.party and p not in addresses]
        if missing:
            raise ConfigError(f"no address for parties {missing}", party=self.party, step=job)
        self.endpoint = endpoint
        self.addresses = dict(addresses)
        self.admit_timeout = max(timeout, endpoint.server.admit_wait + 5.0)
        self._mailbox = endpoint.server.register(job, self.peers)
        self._links: dict[str, _Link] = {}
        self._links_lock = threading.Lock()
        self._opening = {p: threading.Lock() for p in self.peers if p != self.party}
        self._closed = False
        self._warmed = not endpoint.warm_links

    def _warm_up(self) -> None:
        """Open the streams to every peer in the background (once; see the class doc)."""
        self._warmed = True
        for peer in self._opening:
            if peer not in self._links:
                threading.Thread(
                    target=self._open_quietly, args=(peer,), daemon=True,
                    name=f"warm-{self.party}-{peer}",
                ).start()

    def _open_quietly(self, peer: str) -> None:
        try:
            self._link(peer)
        except ChannelError as exc:  # the first real send to ``peer`` reports it
            log.debug("party %s: warming the stream to %s failed: %s", self.party, peer, exc)

    def connect(self) -> None:
        """Open the stream to every peer now (otherwise each opens on first send)."""
        for peer in self.peers:
            if peer != self.party:
                self._link(peer)

    def _link(self, peer: str) -> _Link:
        link = self._links.get(peer)
        if link is not None:
            return link
        with self._opening[peer]:  # one opener per peer; other peers are not held up
            with self._links_lock:
                if self._closed:
                    raise ChannelError(f"channel of job {self.job!r} is closed", party=self.party)
                link = self._links.get(peer)
            if link is None:
                link = _Link(self, peer, self.addresses[peer])
                with self._links_lock:
                    self._links[peer] = link
                    closed = self._closed
                if closed:  # close() ran while this stream opened
                    link.close(self.timeout)
                    raise ChannelError(f"channel of job {self.job!r} is closed", party=self.party)
            return link

    def _send(self, to: str, tag: str, value: Value) -> None:
        check_tag(self.party, tag)  # before a stream opens for nothing
        if not self._warmed:
            self._warm_up()
        self._link(to).send(tag, value, self.timeout)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        if not self._warmed:
            self._warm_up()
        return self._mailbox.get(self.job, frm, tag, timeout)

    def pending(self) -> int:
        """Values received in this job that nobody has read yet."""
        return self._mailbox.pending(self.job)

    def close(self) -> None:
        """Flush every stream, then stop receiving for this job.

        Raises the first error a peer reported (e.g. a refused stream), after
        closing everything.
        """
        with self._links_lock:
            if self._closed:
                return
            self._closed = True
            links = list(self._links.values())
        errors: list[ChannelError] = []
        for link in links:
            try:
                link.close(self.timeout)
            except ChannelError as exc:
                errors.append(exc)
        self.endpoint.server.unregister(self.job)
        if errors:
            raise errors[0]

    def __enter__(self) -> GrpcChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""One party process's presence on the network: its peer server and pooled connections.

:class:`GrpcEndpoint` (re-exported by :mod:`sharedml.transport.grpc`, whose
docstring describes the transport as a whole) holds the party's mTLS
:class:`~sharedml.transport.grpc_server.PeerServer` and one pooled, ready
gRPC connection per peer address. With a revocation list it checks a peer's
certificate before connecting and pins the connection to it
(:mod:`sharedml.transport.tls`); with
:class:`~sharedml.crypto.identity.IdentityFiles` a rotated pair serves and
dials from the next connection on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import grpc
from cryptography import x509

from sharedml.crypto.crl import RevocationFile
from sharedml.crypto.pki import Identity
from sharedml.errors import PeerUnreachable
from sharedml.transport import grpc_wire, tls
from sharedml.transport.base import DEFAULT_TIMEOUT
from sharedml.transport.grpc_server import DEFAULT_MAX_UNREAD, PeerServer, message_options

if TYPE_CHECKING:
    from sharedml.transport.grpc import GrpcChannel

log = logging.getLogger("sharedml.transport.grpc")

#: How long gRPC's connectivity poller may still use a connection whose watch was cancelled.
_POLL_GRACE_S = 0.3


def _client_options(target: str) -> list[tuple[str, str | int]]:
    return [
        *message_options(),
        ("grpc.ssl_target_name_override", target),
        # Connect retries back off from 50 ms to 1 s (gRPC's default starts at 1 s).
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", 1000),
        # gRPC takes this as each attempt's connect timeout: 50 ms aborted every TLS
        # handshake slower than that (any WAN link) until the back-off grew past it.
        ("grpc.min_reconnect_backoff_ms", 20_000),
        # Notice a vanished host (not just a dead process) within ~30 s.
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),  # keep pinging on quiet streams
    ]


def client_options(peer: str) -> list[tuple[str, str | int]]:
    """The options of every client connection to ``peer`` (also the serving gateway's)."""
    return _client_options(peer)


class GrpcEndpoint:
    """One party process's presence on the network: its server and its connections.

    Args:
        identity: this party's certificate, key and CA (see
            :func:`sharedml.crypto.pki.load_identity`), or
            :class:`~sharedml.crypto.identity.IdentityFiles` to take up a rotated pair.
        host, port: where this party's server listens (port 0: a free port).
        connect_timeout: how long to retry reaching a peer before
            :class:`PeerUnreachable`.
        chunk_bytes: size of the gRPC messages a large value is cut into.
        admit_wait, max_frame, max_unread, max_streams_per_peer: limits of
            this party's server (see :class:`~sharedml.transport.grpc_server.PeerServer`).
        revocation: the deployment's revocation list, checked by this party's
            server for every stream and before every new connection to a peer.
        warm_links: a job's channel opens its streams to every peer as soon
            as it is first used (see :class:`GrpcChannel`).
    """

    def __init__(
        self,
        identity: tls.IdentitySource,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        connect_timeout: float = 30.0,
        chunk_bytes: int = grpc_wire.DEFAULT_CHUNK,
        admit_wait: float = 30.0,
        max_frame: int = grpc_wire.DEFAULT_MAX_FRAME,
        max_unread: int = DEFAULT_MAX_UNREAD,
        max_streams_per_peer: int | None = None,
        revocation: RevocationFile | None = None,
        warm_links: bool = True,
    ) -> None:
        self._source = identity
        self.warm_links = warm_links
        self.party = tls.current(identity).party
        self.revocation = revocation
        self.connect_timeout = connect_timeout
        self.chunk_bytes = chunk_bytes
        self.server = PeerServer(
            identity,
            host,
            port,
            admit_wait=admit_wait,
            max_frame=max_frame,
            max_unread=max_unread,
            max_streams_per_peer=max_streams_per_peer,
            revocation=revocation,
        )
        self._credentials: tuple[int, grpc.ChannelCredentials] | None = None
        self._lock = threading.Lock()
        self._connections: dict[tuple[str, str, int, str], grpc.Channel] = {}
        #: The certificate each peer's connection is pinned to (with a revocation list).
        self._pins: dict[tuple[str, str], x509.Certificate] = {}
        self._watching: set[grpc.Future] = set()
        self._watched_until = 0.0
        self._closing = False

    @property
    def identity(self) -> Identity:
        """This party's pair as it is now (a rotated one once installed)."""
        return tls.current(self._source)

    @property
    def address(self) -> str:
        return self.server.address

    def _channel_credentials(self) -> tuple[int, grpc.ChannelCredentials]:
        identity, gen = self.identity, tls.generation(self._source)
        with self._lock:
            if self._credentials is None or self._credentials[0] != gen:
                self._credentials = gen, grpc.ssl_channel_credentials(
                    root_certificates=identity.ca_pem,
                    private_key=identity.key_pem,
                    certificate_chain=identity.cert_pem,
                )
            return self._credentials

    def channel(
        self,
        job: str,
        peers: Iterable[str],
        addresses: Mapping[str, str],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> GrpcChannel:
        """A channel for ``job`` among ``peers`` (this party included), whose
        servers listen at ``addresses`` (party -> "host:port")."""
        from sharedml.transport.grpc import GrpcChannel

        return GrpcChannel(self, job, tuple(peers), addresses, timeout)

    def connection(self, peer: str, address: str) -> grpc.Channel:
        """The pooled, ready connection to ``peer`` at ``address``.

        Retries with back-off (50 ms doubling to 1 s) until
        :attr:`connect_timeout`, then raises :class:`PeerUnreachable`. With a
        revocation list, the peer's certificate is checked first (see
        :mod:`~sharedml.transport.tls`); a peer whose certificate is revoked
        raises :class:`PeerUnreachable` saying so, and one that stays
        unreachable is checked again, in case it now serves a rotated one.
        """
        deadline = time.monotonic() + self.connect_timeout
        key, conn = self._pooled(peer, address, deadline)
        ready = self._watch(conn)
        delay, attempt = 0.05, 1
        try:
            while True:
                try:
                    ready.result(timeout=max(min(delay, deadline - time.monotonic()), 0.001))
                    return conn
                except grpc.FutureCancelledError:
                    raise PeerUnreachable(
                        f"the endpoint closed while connecting to {peer!r}", party=self.party
                    ) from None
                except grpc.FutureTimeoutError:
                    pass
                if self.revocation is not None and attempt % 6 == 0 and time.monotonic() < deadline:
                    self._pins.pop((peer, address), None)  # the peer may serve a rotated pair
                    fresh_key, fresh = self._pooled(peer, address, deadline)
                    if fresh is not conn:
                        self._unwatch(ready)
                        key, conn, ready = fresh_key, fresh, self._watch(fresh)
                if time.monotonic() >= deadline:
                    self._drop(key, conn)
                    raise PeerUnreachable(
                        f"could not reach party {peer!r} at {address} within "
                        f"{self.connect_timeout:g} s ({attempt} attempts)",
                        party=self.party,
                        remedy=f"check that {peer!r} is running there and that its certificate "
                        "chains to this deployment's CA, names it and has not expired",
                    )
                log.debug(
                    "party %s: %s at %s not ready (attempt %d)", self.party, peer, address, attempt
                )
                delay, attempt = min(delay * 2, 1.0), attempt + 1
        finally:
            self._unwatch(ready)

    def _watch(self, conn: grpc.Channel) -> grpc.Future:
        """A future that resolves when ``conn`` is ready (cancelled if the endpoint closes)."""
        with self._lock:
            if self._closing:
                raise PeerUnreachable("the endpoint is closed", party=self.party)
            ready = grpc.channel_ready_future(conn)
            self._watching.add(ready)
        return ready

    def _unwatch(self, ready: grpc.Future) -> None:
        with self._lock:
            mine = ready in self._watching  # else close() has cancelled it
            self._watching.discard(ready)
            self._watched_until = time.monotonic()
        if mine and not ready.done():
            ready.cancel()

    def _pooled(
        self, peer: str, address: str, deadline: float
    ) -> tuple[tuple[str, str, int, str], grpc.Channel]:
        """The pooled connection to ``peer`` for this party's current pair (made if missing)."""
        gen, credentials = self._channel_credentials()
        target = self._target(peer, address, deadline)
        key = (peer, address, gen, target)
        with self._lock:
            conn = self._connections.get(key)
            if conn is None:
                conn = grpc.secure_channel(address, credentials, options=_client_options(target))
                self._connections[key] = conn
        return key, conn

    def _target(self, peer: str, address: str, deadline: float) -> str:
        """The TLS name to ask ``peer`` for: its id, or its checked certificate's pin name."""
        if self.revocation is None:
            return peer
        cert = self._pins.get((peer, address))
        if cert is None or self.revocation.current().revoked(cert.serial_number):
            cert = self._probe(peer, address, deadline)
            target = tls.pinned_target(self.identity, peer, address, cert, self.revocation)
            self._pins[(peer, address)] = cert
            return target
        return tls.target_name(peer, cert)

    def _probe(self, peer: str, address: str, deadline: float) -> x509.Certificate:
        """The certificate ``peer`` presents, asked for with back-off until ``deadline``."""
        delay = 0.05
        while True:
            try:
                return tls.probe(self.identity, peer, address, timeout=max(delay, 1.0))
            except PeerUnreachable:
                if time.monotonic() + delay >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _drop(self, key: tuple[str, str, int, str], conn: grpc.Channel) -> None:
        with self._lock:
            if self._connections.get(key) is conn:
                del self._connections[key]
        # gRPC's connectivity poller may still look at it for a moment after a
        # cancelled readiness future: close it once that has passed
        closer = threading.Timer(_POLL_GRACE_S, conn.close)
        closer.daemon = True
        closer.start()

    def close(self, grace: float | None = 1.0) -> None:
        """Close every connection and stop the server."""
        with self._lock:
            self._closing = True
            watching, self._watching = list(self._watching), set()
            conns, self._connections = list(self._connections.values()), {}
        for ready in watching:  # connections being set up (a warming stream, say)
            ready.cancel()
        # gRPC's poller may look at a connection for a moment after its last watch
        wait = (time.monotonic() if watching else self._watched_until) + _POLL_GRACE_S
        time.sleep(max(wait - time.monotonic(), 0.0))
        for conn in conns:
            conn.close()
        self.server.stop(grace)

    def __enter__(self) -> GrpcEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

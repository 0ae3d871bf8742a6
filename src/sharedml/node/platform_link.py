"""A node's connection to the platform's node service: mutual TLS, one call per message.

The node dials *out* with its party's pair (the certificate's subject is the
party id). The pair is read from disk at each new connection, so a rotated
pair needs no restart: the next call dials anew with it, and the node says
hello again so the platform records the new certificate. With a revocation
list the platform's certificate is checked and pinned again at each dial
(:func:`sharedml.transport.tls.dial`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from sharedml.control import SERVICE, Wire, decode
from sharedml.crypto.crl import RevocationFile
from sharedml.crypto.identity import IdentityFiles
from sharedml.transport import tls

#: How long one call to the platform may take.
CALL_TIMEOUT_S = 10.0


class PlatformLink:
    """Calls the platform's node service; ``on_new_pair`` runs when a rotated pair redials."""

    def __init__(self, identity: IdentityFiles, platform_name: str, platform: str,
                 revocation: RevocationFile | None, on_new_pair: Callable[[], None]) -> None:
        self._identity, self._revocation = identity, revocation
        self._name, self._address = platform_name, platform
        self._on_new_pair = on_new_pair
        self._channel: grpc.Channel | None = None
        self._generation = -1

    def call(self, method: str, msg: Wire, reply: type[Any]) -> Any:
        """``method`` of the node service with ``msg``, its answer decoded as ``reply``.

        Raises ``grpc.RpcError`` (down, refused, revoked) or a sharedml error (a reply
        the node cannot use)."""
        stub = self._connection().unary_unary(f"/{SERVICE}/{method}")
        return decode(reply, stub(msg.encode(), timeout=CALL_TIMEOUT_S))

    def drop(self) -> None:
        """Close the connection (the next call dials anew)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _connection(self) -> grpc.Channel:
        """The connection, made anew after this node's pair rotated or the connection failed
        (the platform may serve a rotated certificate)."""
        identity = self._identity.current()
        if self._channel is None or self._generation != self._identity.generation:
            if self._generation not in (-1, self._identity.generation):
                self._on_new_pair()  # say hello again: the platform records the new pair
            self.drop()
            self._channel = tls.dial(identity, self._name, self._address, self._revocation)
            self._generation = self._identity.generation
        return self._channel

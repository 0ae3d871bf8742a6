"""The gateway's connection to one partner's serving node (grpc.aio, mutual TLS).

One long-lived HTTP/2 connection per partner, opened once: the hot path never
does a TLS handshake. The connection reconnects by itself (back-off 50 ms to
1 s) when a partner's node comes back. gRPC errors are translated here, at
the boundary, into sharedml's tree, each naming the partner:
``DEADLINE_EXCEEDED`` → :class:`~sharedml.errors.PeerTimeout`, ``UNAVAILABLE``
→ :class:`~sharedml.errors.PeerUnreachable`, the partner's refusals →
:class:`~sharedml.errors.ConfigError` / :class:`~sharedml.errors.PolicyDenied`
/ :class:`~sharedml.errors.FrameError` with its own message.
"""

from __future__ import annotations

import json

import grpc
import grpc.aio

from sharedml.crypto.pki import Identity
from sharedml.errors import (
    ChannelError,
    ConfigError,
    FrameError,
    PeerTimeout,
    PeerUnreachable,
    PolicyDenied,
    SharedMLError,
)
from sharedml.serving import wire
from sharedml.serving.parts import PartInfo
from sharedml.transport.grpc_endpoint import client_options

STEP = "serve: score"


class PartnerClient:
    def __init__(self, party: str, address: str, identity: Identity) -> None:
        self.party, self.address = party, address
        credentials = grpc.ssl_channel_credentials(
            root_certificates=identity.ca_pem, private_key=identity.key_pem,
            certificate_chain=identity.cert_pem)
        self._channel = grpc.aio.secure_channel(address, credentials,
                                                options=client_options(party))
        self._score = self._channel.unary_unary(wire.SCORE)
        self._describe = self._channel.unary_unary(wire.DESCRIBE)

    async def describe(self, version: str, timeout: float) -> PartInfo:
        try:
            raw = await self._describe(version.encode(), timeout=timeout, wait_for_ready=True)
            doc = json.loads(raw)
            info = PartInfo(**doc)
        except grpc.aio.AioRpcError as exc:
            raise self._translate(exc, timeout, "serve: describe") from None
        except (TypeError, ValueError):
            raise FrameError("malformed part description", party=self.party,
                             step="serve: describe") from None
        if info.party != self.party or info.version != version:
            raise ConfigError(f"{self.party!r} described {info.party!r}'s part of "
                              f"{info.version!r}", party=self.party, step="serve: describe")
        return info

    async def score(self, version: str, ids: list[str], timeout: float) -> wire.ScoreReply:
        try:
            raw = await self._score(wire.encode_request(version, ids), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._translate(exc, timeout, STEP) from None
        try:
            return wire.decode_reply(raw, len(ids))
        except FrameError as exc:
            raise FrameError(exc.message, party=self.party, step=STEP) from None

    def _translate(self, exc: grpc.aio.AioRpcError, timeout: float, step: str) -> SharedMLError:
        code, details = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return PeerTimeout(f"party {self.party!r} did not answer within {timeout:g} s",
                               party=self.party, step=step,
                               remedy=f"check {self.party!r}'s serving node at {self.address}; "
                               "the request was not scored, retry it")
        if code == grpc.StatusCode.UNAVAILABLE:
            return PeerUnreachable(f"party {self.party!r}'s serving node at {self.address} "
                                   f"cannot be reached", party=self.party, step=step,
                                   remedy=f"ask {self.party!r} to start or restart its "
                                   "serving node; requests recover when it is back")
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return ConfigError(f"party {self.party!r} answered: {details}", party=self.party,
                               step=step)
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return PolicyDenied(f"party {self.party!r} refused this gateway: {details}",
                                party=self.party, step=step)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return FrameError(f"party {self.party!r} refused the request: {details}",
                              party=self.party, step=step)
        return ChannelError(f"party {self.party!r} failed: {code.name} {details}",
                            party=self.party, step=step)

    async def close(self) -> None:
        await self._channel.close()

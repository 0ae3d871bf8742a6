"""Helpers shared by the transport tests (importable by spawned child processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc

from sharedml.crypto import pki
from sharedml.crypto.pki import Identity
from sharedml.transport import grpc_wire
from sharedml.transport.base import Channel
from sharedml.transport.grpc import GrpcEndpoint
from sharedml.transport.grpc_server import JOB_KEY, METHOD, WIRE_KEY


def run_threads(channels: Mapping[str, Channel], fn: Callable[[Channel], Any]) -> dict[str, Any]:
    """Run ``fn(channel)`` for every party in a thread; re-raise the first failure."""
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def body(party: str) -> None:
        try:
            results[party] = fn(channels[party])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(p,)) for p in channels]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    if errors:
        raise errors[0]
    return results


def raw_stream(
    identity: Identity,
    address: str,
    server_party: str,
    job: str,
    messages: Iterable[bytes],
    timeout: float = 20.0,
) -> tuple[grpc.StatusCode, str]:
    """Open a stream with a hand-made message sequence; return the server's status."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=identity.ca_pem,
        private_key=identity.key_pem,
        certificate_chain=identity.cert_pem,
    )
    options = [("grpc.ssl_target_name_override", server_party)]
    with grpc.secure_channel(address, credentials, options=options) as conn:
        call = conn.stream_stream(METHOD)(
            iter(messages),
            metadata=((JOB_KEY, job), (WIRE_KEY, str(grpc_wire.VERSION))),
            timeout=timeout,
            wait_for_ready=True,
        )
        try:
            for _ in call:
                pass
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""


def die_mid_stream(
    pki_dir: str, party: str, server_party: str, address: str, job: str, started: Any
) -> None:
    """Child process: announce a 64 MiB value, send part of it, then hang until killed."""
    import numpy as np

    identity = pki.load_identity(Path(pki_dir), party)
    first, *rest = grpc_wire.messages("big", np.zeros(8 << 20), chunk=1 << 20)

    def forever() -> Any:
        yield first
        yield rest[0]
        started.set()
        while True:
            time.sleep(1)

    raw_stream(identity, address, server_party, job, forever(), timeout=600)


def serve_then_hang(pki_dir: str, party: str, job: str, peers: list[str], conn: Any) -> None:
    """Child process: run an endpoint with a channel for ``job``, report its address, hang."""
    endpoint = GrpcEndpoint(pki.load_identity(Path(pki_dir), party))
    endpoint.channel(job, peers, {p: "127.0.0.1:1" for p in peers})
    conn.send(endpoint.address)
    while True:
        time.sleep(1)

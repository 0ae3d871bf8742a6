"""Certificates at the transport: rotation and revocation for gRPC's mutual TLS.

Python's gRPC offers no hook into certificate verification, so both checks
are made around it:

* **Server side** (a party's peer server, the platform's node service): the
  client's certificate, already verified against the CA by TLS, is read from
  the call's auth context and checked against the revocation list before a
  byte of the request is used (:func:`refuse_revoked`). Server credentials
  are *dynamic* (:func:`server_credentials`): gRPC asks for the certificate
  before every handshake, so a rotated pair is served from the next
  connection on.
* **Client side** (:func:`probe`): before a connection to a peer is made,
  one TLS handshake with Python's :mod:`ssl` (mutual, ALPN ``h2``, the
  peer's name checked) fetches the certificate the peer presents now; it is
  checked against the list, and the gRPC connection then asks for that
  certificate's *pin name* (:func:`~sharedml.crypto.pki.pin_name`, a DNS name
  holding its serial) as its TLS target. So gRPC's own handshake accepts
  that certificate and no other: a revoked one cannot slip in between the
  probe and the connection.

The client's key reaches :mod:`ssl` through an anonymous in-memory file
(``memfd``), never through the file system.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence

import grpc
from cryptography import x509

from sharedml.crypto.crl import RevocationFile
from sharedml.crypto.identity import IdentityFiles
from sharedml.crypto.pki import Identity, pin_name
from sharedml.errors import AuthError, PeerUnreachable

#: What a process may be handed as its identity: a fixed pair, or files an operator rotates.
IdentitySource = Identity | IdentityFiles


def current(source: IdentitySource) -> Identity:
    return source.current() if isinstance(source, IdentityFiles) else source


def generation(source: IdentitySource) -> int:
    """Changes whenever ``source`` takes up a new pair (0 for a fixed pair)."""
    return source.generation if isinstance(source, IdentityFiles) else 0


# -- server side ------------------------------------------------------------------------------
def server_credentials(source: IdentitySource) -> grpc.ServerCredentials:
    """Mutual-TLS server credentials that serve ``source``'s pair as it is at each handshake."""
    first = current(source)

    def config(identity: Identity) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(identity.key_pem, identity.cert_pem)], root_certificates=identity.ca_pem
        )

    served = [first]

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        now = current(source)
        if now is served[0]:
            return None
        served[0] = now
        return config(now)

    return grpc.dynamic_ssl_server_credentials(
        config(first), fetch, require_client_authentication=True
    )


def peer_certificate(context: grpc.ServicerContext) -> x509.Certificate | None:
    """The client certificate TLS verified for this call, if any."""
    pems = context.auth_context().get("x509_pem_cert") or []
    return x509.load_pem_x509_certificate(bytes(pems[0])) if pems else None


def refuse_revoked(
    context: grpc.ServicerContext,
    revocation: RevocationFile | None,
    refuse: Callable[[grpc.ServicerContext, grpc.StatusCode, str], object],
) -> None:
    """Call ``refuse(context, UNAUTHENTICATED, why)`` if the caller's certificate is revoked."""
    if revocation is None:
        return
    cert = peer_certificate(context)
    if cert is None:
        refuse(context, grpc.StatusCode.UNAUTHENTICATED, "the caller presented no certificate")
        return
    try:
        revocation.check(cert)
    except AuthError as exc:
        refuse(context, grpc.StatusCode.UNAUTHENTICATED, exc.message)


# -- client side ------------------------------------------------------------------------------
@contextlib.contextmanager
def _in_memory(data: bytes) -> Iterator[str]:
    """A path that reads ``data`` from an anonymous memory file (Linux ``memfd``)."""
    fd = os.memfd_create("sharedml-identity", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _context(identity: Identity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=identity.ca_pem.decode())
    with _in_memory(identity.cert_pem + b"\n" + identity.key_pem) as path:
        ctx.load_cert_chain(path)
    ctx.set_alpn_protocols(["h2"])  # gRPC's servers refuse a handshake without it
    return ctx


def probe(identity: Identity, peer: str, address: str, timeout: float) -> x509.Certificate:
    """The certificate ``peer`` presents at ``address`` now (chain and name checked).

    Raises :class:`PeerUnreachable` when nothing answers there or its TLS
    handshake fails (another CA, another name, an expired certificate).
    """
    host, _, port = address.rpartition(":")
    try:
        raw = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        with raw, _context(identity).wrap_socket(raw, server_hostname=peer) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError) as exc:
        raise PeerUnreachable(
            f"could not check the certificate of party {peer!r} at {address}: {exc}",
            party=identity.party,
            remedy=f"check that {peer!r} runs there with a certificate from this deployment's CA",
        ) from None
    if der is None:  # pragma: no cover - a verified handshake always has a peer certificate
        raise PeerUnreachable(f"party {peer!r} presented no certificate", party=identity.party)
    return x509.load_der_x509_certificate(der)


def target_name(peer: str, cert: x509.Certificate) -> str:
    """The name gRPC must verify: ``cert``'s pin name when it has one, else the party id."""
    pinned = pin_name(peer, cert.serial_number)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return peer
    return pinned if pinned in names.get_values_for_type(x509.DNSName) else peer


def pinned_target(
    identity: Identity, peer: str, address: str, cert: x509.Certificate,
    revocation: RevocationFile,
) -> str:
    """The TLS name that pins ``cert`` (what ``peer`` presented at ``address``), once it
    is checked against ``revocation``; a revoked one raises :class:`PeerUnreachable`."""
    try:
        revocation.check(cert)
    except AuthError as exc:
        raise PeerUnreachable(
            f"refused to connect to party {peer!r} at {address}: {exc.message}",
            party=identity.party,
            remedy=exc.remedy,
        ) from None
    return target_name(peer, cert)


def dial(
    identity: Identity,
    peer: str,
    address: str,
    revocation: RevocationFile | None,
    options: Sequence[tuple[str, str | int]] = (),
    timeout: float = 10.0,
) -> grpc.Channel:
    """A mutual-TLS gRPC connection to ``peer`` at ``address``; with a revocation
    list, to the certificate :func:`probe` found there and checked, pinned."""
    target = peer
    if revocation is not None:
        cert = probe(identity, peer, address, timeout)
        target = pinned_target(identity, peer, address, cert, revocation)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=identity.ca_pem,
        private_key=identity.key_pem,
        certificate_chain=identity.cert_pem,
    )
    return grpc.secure_channel(
        address, credentials, options=[*options, ("grpc.ssl_target_name_override", target)]
    )


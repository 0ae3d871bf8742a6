"""Calling an enclave over gRPC (used by the provider SDK and the manager).

Runs outside the enclave: it sees only what the enclave returns (evidence,
ciphertext, metrics, receipts). Over the network the channel trusts exactly
one certificate, the enclave's own (``server_certificate``; see
:mod:`sharedml.tee.ratls` for why that is safe once the evidence is verified).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc

from sharedml.tee.attestation.base import Evidence
from sharedml.tee.enclave import wire
from sharedml.tee.enclave.ratls import HOSTNAME, spki_sha256


def channel_credentials(
    server_certificate: bytes, tls_dir: str | Path | None, name: str | None
) -> grpc.ChannelCredentials:
    """Trust only ``server_certificate``; present the deployment identity ``name`` if given."""
    if tls_dir is None or name is None:
        return grpc.ssl_channel_credentials(server_certificate)
    from sharedml.crypto.pki import load_identity

    ident = load_identity(tls_dir, name)
    return grpc.ssl_channel_credentials(server_certificate, ident.key_pem, ident.cert_pem)


class EnclaveClient:
    """One connection to one enclave at ``address`` ("host:port")."""

    def __init__(
        self,
        address: str,
        *,
        server_certificate: bytes | None = None,
        tls_dir: str | Path | None = None,
        tls_name: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        self.address = address
        self.timeout = timeout
        #: What attestation must bind: the pinned key's SPKI hash (empty without TLS, in process).
        self.tls_spki_sha256 = b""
        self.job: str | None = None
        if server_certificate is not None:
            self.tls_spki_sha256 = spki_sha256(server_certificate)
            options = [*wire.OPTIONS, ("grpc.ssl_target_name_override", HOSTNAME)]
            creds = channel_credentials(server_certificate, tls_dir, tls_name)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=wire.OPTIONS)

    @classmethod
    def connect(
        cls, address: str, *, tls_dir: str | Path | None = None, tls_name: str | None = None, timeout: float = 600.0
    ) -> EnclaveClient:
        """Pin the certificate the enclave at ``address`` presents now (verify it with ``attest_enclave``)."""
        from sharedml.tee.ratls import fetch_certificate

        cert = fetch_certificate(address, tls_dir=tls_dir, tls_name=tls_name)
        return cls(address, server_certificate=cert, tls_dir=tls_dir, tls_name=tls_name, timeout=timeout)

    def for_job(self, job: str) -> EnclaveClient:
        """The same connection, addressing ``job`` in a service enclave."""
        other = copy.copy(self)
        other.job = job
        return other

    def _unary(
        self, method: str, header: dict[str, Any], body: bytes = b"", timeout: float | None = None
    ) -> tuple[dict[str, Any], bytes]:
        call = self._channel.unary_unary(f"/{wire.SERVICE}/{method}")
        if self.job is not None:
            header = {"job": self.job, **header}
        try:
            reply = call(wire.encode(header, body), timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise wire.translate(exc, method.lower()) from None
        return wire.decode(reply)

    def request(self, method: str, header: dict[str, Any], body: bytes = b"",
                timeout: float | None = None) -> tuple[dict[str, Any], bytes]:
        """Any unary method: header and body out, header and body back (errors translated)."""
        return self._unary(method, header, body, timeout)

    def attest(self, nonce: bytes) -> tuple[Evidence, bytes]:
        header, _ = self._unary("Attest", {"nonce": nonce.hex()})
        return Evidence.from_json(header["evidence"]), str(header["bundle"]).encode()

    def upload(
        self,
        upload_id: str,
        sealed_key: bytes,
        policy: bytes,
        size: int,
        chunks: Iterable[tuple[int, bool, bytes]],
        *,
        batched: bool = False,
    ) -> dict[str, Any]:
        """Stream one upload: header (sealed data key, signed policy, size), then chunks.

        ``batched``: each chunk is one record batch the enclave spools (``size`` unused).
        """

        def messages() -> Iterator[bytes]:
            yield wire.encode({
                **({"job": self.job} if self.job is not None else {}),
                "upload_id": upload_id,
                "size": size,
                "batched": batched,
                "sealed_key": base64.b64encode(sealed_key).decode(),
                "policy": base64.b64encode(policy).decode(),
            })
            for seq, last, ct in chunks:
                yield wire.encode({"seq": seq, "last": last}, ct)

        call = self._channel.stream_unary(f"/{wire.SERVICE}/Upload")
        try:
            reply = call(messages(), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise wire.translate(exc, "upload") from None
        return wire.decode(reply)[0]

    def train(self, request: dict[str, Any]) -> dict[str, Any]:
        header, _ = self._unary("Train", {"request": request})
        return dict(header["metrics"])

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run a job spec's steps (:meth:`~sharedml.tee.enclave.runtime.Enclave.run`)."""
        return self._unary("Run", {"request": request})[0]

    def status(self, timeout: float | None = None) -> dict[str, Any]:
        return self._unary("Status", {}, timeout=timeout)[0]

    def result(self, recipient: str, what: str = "model", step: str | None = None) -> bytes:
        header: dict[str, Any] = {"recipient": recipient, "what": what}
        if step is not None:
            header["step"] = step
        return self._unary("Result", header)[1]

    def destroy(self) -> dict[str, Any]:
        header, _ = self._unary("Destroy", {})
        return dict(header["receipt"])

    def open(self, job: str) -> EnclaveClient:
        """Open ``job`` in a service enclave (operator); return a client addressing it."""
        self._unary("Open", {"job": job})
        return self.for_job(job)

    def call(self, method: str, header: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """A process-level method (``Retire``, ``Shutdown``, the cluster's) with a JSON answer."""
        return self._unary(method, header, timeout=timeout)[0]

    def close(self) -> None:
        self._channel.close()

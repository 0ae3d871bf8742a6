"""The simulated quoting side: the quoter, its process, and the enclave's clients.

:class:`SimQuoter` plays the CPU's quoting enclave for one loaded enclave on
one simulated platform (see :mod:`sharedml.tee.attestation.sim` for the vendor
PKI, manifests and the verifier). It measures the code itself and derives
seal keys; the enclave supplies only ``report_data``.

Run as ``python -m sharedml.tee.attestation.simqe --platform DIR --manifest FILE
--socket PATH``: it measures the manifest's code at start (not the enclave),
then answers on a Unix socket (mode 0600) with length-prefixed JSON:

- ``{"op": "quote", "report_data": hex, "user_data": hex}`` → ``{"evidence": json}``
- ``{"op": "seal_key", "svn": n}`` → ``{"key": hex}`` (only for n ≤ the measured svn)
- ``{"op": "measurement_seal_key"}`` → ``{"key": hex}`` (bound to the exact measurement)

Errors come back as ``{"error": message}``. Nothing is pickled.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import sys
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharedml.errors import AttestationError, ConfigError, PolicyDenied, SharedMLError
from sharedml.tee.attestation import cose
from sharedml.tee.attestation.base import Attester, Evidence, report_data_for
from sharedml.tee.attestation.sim import (
    PROFILE,
    Manifest,
    SimVendor,
    load_key,
    measure,
    signer_id,
    sigstruct,
)
from sharedml.tee.control import listen, recv_frame, send_frame, serve


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


class SimQuoter:
    """The quoting side for one loaded enclave on one simulated platform.

    Measures the manifest's files itself at load; refuses a manifest whose
    signature does not match what it measured.
    """

    def __init__(self, platform_dir: str | Path, manifest: Manifest, now: dt.datetime | None = None) -> None:
        pdir = Path(platform_dir)
        self._key = load_key(pdir / "key.pem")
        self._cert = x509.load_pem_x509_certificate((pdir / "cert.pem").read_bytes())
        vendor = SimVendor(pdir.parent.parent)
        self._bundle = [c.public_bytes(serialization.Encoding.DER) for c in (vendor.root, vendor.pca)]
        self._seal_secret = (pdir / "seal.secret").read_bytes()
        self._tcb_svn = int((pdir / "tcb_svn").read_text())
        self.platform_id = pdir.name
        self.measurement = measure(manifest.root, manifest.files, manifest.config)
        signer_key = serialization.load_pem_public_key(manifest.signer_public_key)
        if not isinstance(signer_key, ec.EllipticCurvePublicKey):
            raise ConfigError("manifest signer key is not EC")
        try:
            signer_key.verify(
                manifest.signature,
                sigstruct(self.measurement, manifest.product_id, manifest.svn, manifest.debug),
                ec.ECDSA(hashes.SHA384()),
            )
        except InvalidSignature:
            raise PolicyDenied(
                "enclave manifest signature does not match the measured code",
                step="load",
                remedy="rebuild and re-sign the enclave manifest",
            ) from None
        self.signer = signer_id(manifest.signer_public_key)
        self.manifest = manifest

    def quote(self, report_data: bytes, user_data: bytes = b"", now: dt.datetime | None = None) -> Evidence:
        if len(report_data) != 64 or len(user_data) > 1024:
            raise ConfigError("report_data must be 64 bytes and user_data ≤ 1024")
        payload = {
            "profile": PROFILE,
            "platform_id": self.platform_id,
            "tcb_svn": self._tcb_svn,
            "measurement": self.measurement,
            "signer": self.signer,
            "product_id": self.manifest.product_id,
            "svn": self.manifest.svn,
            "debug": self.manifest.debug,
            "report_data": report_data,
            "user_data": user_data,
            "timestamp": int(_now(now).timestamp() * 1000),
            "certificate": self._cert.public_bytes(serialization.Encoding.DER),
            "cabundle": self._bundle,
        }
        return Evidence("sim", cose.sign1(cbor2.dumps(payload), self._key))

    def seal_key(self, svn: int) -> bytes:
        """EGETKEY analogue: a key bound to signer + product + ``svn`` (≤ own svn)."""
        if svn > self.manifest.svn or svn < 0:
            raise PolicyDenied(
                f"seal key for svn {svn} refused to an enclave at svn {self.manifest.svn}",
                step="unseal",
                remedy="an older enclave cannot open state sealed by a newer one",
            )
        info = b"sharedml-sim-seal/1" + self.signer + cbor2.dumps([self.manifest.product_id, svn])
        return HKDF(hashes.SHA384(), 32, None, info).derive(self._seal_secret)

    def measurement_seal_key(self) -> bytes:
        """EGETKEY with the MRENCLAVE policy: a key only this exact measurement (on this platform) derives."""
        info = b"sharedml-sim-seal-measurement/1" + self.measurement
        return HKDF(hashes.SHA384(), 32, None, info).derive(self._seal_secret)


class LocalSimAttester(Attester):
    """An in-process attester over a :class:`SimQuoter` (embedded simulation mode)."""

    backend = "sim"

    def __init__(self, quoter: SimQuoter) -> None:
        self._quoter = quoter

    def attest(self, nonce: bytes, public_key: bytes, user_data: bytes = b"") -> Evidence:
        return self._quoter.quote(report_data_for(nonce, public_key), user_data)

    def seal_key(self, svn: int) -> bytes:
        return self._quoter.seal_key(svn)

    def measurement_seal_key(self) -> bytes:
        return self._quoter.measurement_seal_key()


def _handle(quoter: SimQuoter, req: dict[str, Any]) -> dict[str, Any]:
    try:
        if req.get("op") == "quote":
            ev = quoter.quote(bytes.fromhex(req["report_data"]), bytes.fromhex(req.get("user_data", "")))
            return {"evidence": ev.to_json()}
        if req.get("op") == "seal_key":
            return {"key": quoter.seal_key(int(req["svn"])).hex()}
        if req.get("op") == "measurement_seal_key":
            return {"key": quoter.measurement_seal_key().hex()}
        if req.get("op") == "info":
            return {"svn": quoter.manifest.svn, "product_id": quoter.manifest.product_id}
        return {"error": f"unknown op {req.get('op')!r}"}
    except (SharedMLError, ValueError, KeyError, TypeError) as exc:
        return {"error": str(exc)}


def serve_quoter(quoter: SimQuoter, path: str) -> None:
    srv = listen(path)
    print("ready", flush=True)
    serve(srv, lambda req: _handle(quoter, req))


class SimAttester(Attester):
    """The enclave's side: asks the quoting process for evidence over its socket."""

    backend = "sim"

    def __init__(self, socket_path: str | Path) -> None:
        self._path = str(socket_path)

    def _call(self, req: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self._path)
            send_frame(s, req)
            resp = recv_frame(s)
        if resp is None or "error" in resp:
            raise AttestationError(
                f"quoting process refused: {resp.get('error') if resp else 'no answer'}",
                step="attest",
            )
        return resp

    def attest(self, nonce: bytes, public_key: bytes, user_data: bytes = b"") -> Evidence:
        rd = report_data_for(nonce, public_key)
        resp = self._call({"op": "quote", "report_data": rd.hex(), "user_data": user_data.hex()})
        return Evidence.from_json(resp["evidence"])

    def seal_key(self, svn: int) -> bytes:
        return bytes.fromhex(self._call({"op": "seal_key", "svn": svn})["key"])

    def measurement_seal_key(self) -> bytes:
        return bytes.fromhex(self._call({"op": "measurement_seal_key"})["key"])

    def svn(self) -> int:
        return int(self._call({"op": "info"})["svn"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="sharedml-simqe")
    ap.add_argument("--platform", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--socket", required=True)
    args = ap.parse_args(argv)
    try:
        quoter = SimQuoter(args.platform, Manifest.from_json(Path(args.manifest).read_text()))
    except SharedMLError as exc:
        print(f"refused: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    serve_quoter(quoter, args.socket)


if __name__ == "__main__":
    main()

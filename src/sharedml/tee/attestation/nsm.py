"""Evidence from an AWS Nitro Enclave through the Nitro Secure Module (``/dev/nsm``).

The NSM is reached by one ioctl (Linux ``include/uapi/linux/nsm.h``):
``NSM_IOCTL_RAW = _IOWR(0x0A, 0, struct nsm_raw)`` where ``nsm_raw`` holds two
``{u64 addr, u64 len}`` iovecs — the CBOR request (≤ 4 KiB) and a buffer for
the CBOR response (≤ 12 KiB), whose ``len`` the driver sets to the bytes written.

1. Request ``{"Attestation": {"nonce": n, "public_key": k, "user_data": u}}``
   (each ≤ 1024 bytes) — the NSM signs a COSE_Sign1 document over the PCRs and
   these fields with a key certified by the AWS Nitro root;
2. response ``{"Attestation": {"document": bytes}}``, or ``{"Error": name}``.

The nonce and key travel in their own fields, so the verifier checks them
directly (no report-data hash). No collateral: the chain is in the document.

Reveals: the PCRs (image, kernel, application, IAM role, instance, signer)
and the module id to whoever gets the document. Security model: Nitro — the
parent instance is untrusted; the Nitro hypervisor and AWS's PKI are trusted.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
from collections.abc import Callable
from typing import Any

import cbor2

from sharedml.errors import AttestationError, ConfigError
from sharedml.tee.attestation.base import Attester, Evidence

DEV_NSM = "/dev/nsm"
NSM_IOCTL_RAW = 0xC0200A00  # _IOWR(0x0A, 0, 32-byte struct nsm_raw)
REQUEST_MAX = 0x1000
RESPONSE_MAX = 0x3000
FIELD_MAX = 1024

Ioctl = Callable[[int, int, Any], Any]


class IoVec(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class NsmRaw(ctypes.Structure):
    _fields_ = [("request", IoVec), ("response", IoVec)]


class NsmDevice:
    """The NSM character device: one CBOR request in, one CBOR response out.

    ``ioctl`` is :func:`fcntl.ioctl` in production; a test passes a fake that
    plays the driver on the same ``nsm_raw`` memory.
    """

    def __init__(self, path: str = DEV_NSM, *, ioctl: Ioctl = fcntl.ioctl) -> None:
        if not os.path.exists(path):
            raise ConfigError(f"no Nitro Secure Module at {path}", step="attest",
                              remedy="run inside a Nitro Enclave (the NSM device exists only there)")
        self.path = path
        self._ioctl = ioctl

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        data = cbor2.dumps(request)
        if len(data) > REQUEST_MAX:
            raise ConfigError(f"NSM request is {len(data)} bytes (max {REQUEST_MAX})", step="attest")
        req = ctypes.create_string_buffer(data, len(data))
        resp = ctypes.create_string_buffer(RESPONSE_MAX)
        raw = NsmRaw(IoVec(ctypes.addressof(req), len(data)), IoVec(ctypes.addressof(resp), RESPONSE_MAX))
        fd = os.open(self.path, os.O_RDWR)
        try:
            self._ioctl(fd, NSM_IOCTL_RAW, raw)
        except OSError as exc:
            raise AttestationError(f"NSM ioctl failed: {exc}", step="attest") from None
        finally:
            os.close(fd)
        size = min(int(raw.response.len), RESPONSE_MAX)
        try:
            answer = cbor2.loads(resp.raw[:size])
        except (ValueError, cbor2.CBORDecodeError) as exc:
            raise AttestationError(f"NSM response is not CBOR: {exc}", step="attest") from None
        if not isinstance(answer, dict):
            raise AttestationError("NSM response is not a map", step="attest")
        return answer


class NitroAttester(Attester):
    """Attestation documents from the NSM, binding the verifier's nonce and the key directly."""

    backend = "nitro"

    def __init__(self, device: NsmDevice | None = None) -> None:
        self._device = device if device is not None else NsmDevice()

    def attest(self, nonce: bytes, public_key: bytes, user_data: bytes = b"") -> Evidence:
        for name, value in (("nonce", nonce), ("public_key", public_key), ("user_data", user_data)):
            if len(value) > FIELD_MAX:
                raise ConfigError(f"NSM {name} is {len(value)} bytes (max {FIELD_MAX})", step="attest",
                                  remedy="bind a digest of the key instead of the key itself")
        answer = self._device.call({"Attestation": {
            "nonce": nonce, "public_key": public_key, "user_data": user_data or None,
        }})
        if "Error" in answer:
            raise AttestationError(f"NSM refused the attestation request: {answer['Error']}", step="attest")
        document = answer.get("Attestation", {}).get("document") if isinstance(answer.get("Attestation"), dict) else None
        if not isinstance(document, bytes):
            raise AttestationError("NSM response carries no attestation document", step="attest")
        return Evidence(self.backend, document)

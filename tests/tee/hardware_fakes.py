"""Fakes of the three hardware attestation interfaces, answering with real recorded evidence.

Each plays what the kernel or driver does, on the same interface production
code uses, so the attesters run their production path and the verifier sees
evidence real hardware produced (for other report data: see the tests).
"""

from __future__ import annotations

import ctypes
import secrets
from pathlib import Path
from typing import Any

import cbor2

from sharedml.tee.attestation.configfs_tsm import ReportFs
from sharedml.tee.attestation.nsm import NSM_IOCTL_RAW, REQUEST_MAX, NsmRaw


class FakeTsmKernel(ReportFs):
    """configfs-tsm on a temporary folder: mkdir makes the attributes, writing inblob quotes.

    ``intruder`` makes another writer bump ``generation`` while outblob is read.
    """

    def __init__(self, root: Path, provider: str, outblob: bytes, auxblob: bytes = b"") -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root)
        self.provider, self.outblob, self.auxblob = provider, outblob, auxblob
        self.inblobs: list[bytes] = []
        self.intruder = False

    def make_entry(self) -> Path:
        entry = super().make_entry()
        for name, value in (("provider", f"{self.provider}\n".encode()), ("generation", b"0\n"),
                            ("inblob", b""), ("outblob", b""), ("auxblob", b"")):
            (entry / name).write_bytes(value)
        return entry

    def _bump(self, entry: Path) -> None:
        (entry / "generation").write_bytes(b"%d\n" % (int((entry / "generation").read_bytes()) + 1))

    def write(self, entry: Path, name: str, data: bytes) -> None:
        super().write(entry, name, data)
        if name == "inblob":
            if len(data) != 64:
                raise OSError(22, "inblob must be 64 bytes")
            self.inblobs.append(data)
            self._bump(entry)
            (entry / "outblob").write_bytes(self.outblob)
            (entry / "auxblob").write_bytes(self.auxblob)

    def read(self, entry: Path, name: str) -> bytes:
        out = super().read(entry, name)
        if name == "outblob" and self.intruder:
            self._bump(entry)
        return out

    def remove_entry(self, entry: Path) -> None:
        for child in entry.iterdir():  # the kernel drops the attributes with the entry
            child.unlink()
        super().remove_entry(entry)


def gramine_tree(root: Path, quote: bytes, kind: str = "dcap") -> Path:
    """Gramine's ``/dev/attestation`` as files: the quote is the recorded one."""
    (root / "keys").mkdir(parents=True)
    (root / "attestation_type").write_text(kind)
    (root / "user_report_data").write_bytes(bytes(64))
    (root / "quote").write_bytes(quote)
    (root / "keys" / "_sgx_mrsigner").write_bytes(secrets.token_bytes(16))
    (root / "keys" / "_sgx_mrenclave").write_bytes(secrets.token_bytes(16))
    return root


class FakeNsmDriver:
    """Plays the NSM driver behind ``ioctl``: reads the request iovec, writes the response one."""

    def __init__(self, document: bytes, error: str | None = None) -> None:
        self.document = document
        self.error = error
        self.requests: list[dict[str, Any]] = []

    def __call__(self, fd: int, command: int, raw: NsmRaw) -> int:
        if command != NSM_IOCTL_RAW or raw.request.len > REQUEST_MAX:
            raise OSError(22, "bad NSM ioctl")
        request = cbor2.loads(ctypes.string_at(raw.request.addr, raw.request.len))
        self.requests.append(request)
        answer = {"Error": self.error} if self.error else {"Attestation": {"document": self.document}}
        data = cbor2.dumps(answer)
        if len(data) > raw.response.len:
            raise OSError(12, "response buffer too small")
        ctypes.memmove(raw.response.addr, data, len(data))
        raw.response.len = len(data)
        return 0

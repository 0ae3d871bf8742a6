"""Sealed state: data encrypted to signer + product + security version (8.3-3).

The platform derives seal keys (SGX's EGETKEY with MRSIGNER policy; here the
simulated quoting side, :meth:`SimQuoter.seal_key`) from a secret fused into
the platform, the enclave's signer and product id, and a security version it
grants only if it is ≤ the enclave's own measured version. So:

1. :meth:`SealedStore.seal` encrypts with the key for the enclave's *own* svn
   and writes that svn into the (authenticated) header;
2. :meth:`SealedStore.unseal` asks for the key of the svn in the header — a
   newer version gets it (it can read older state), an older version is
   refused (it can never read state written by a newer one), and another
   signer or product derives a different key and fails authentication.

Reveals: to the host, the sealed blob's size, name and svn.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sharedml.errors import PolicyDenied, ProtocolAbort

KeySource = Callable[[int], bytes]


class SealedStore:
    def __init__(self, key_for_svn: KeySource, svn: int) -> None:
        self._key_for = key_for_svn
        self.svn = svn

    def seal(self, name: str, data: bytes) -> bytes:
        header = json.dumps({"v": 1, "name": name, "svn": self.svn}).encode()
        nonce = os.urandom(12)
        ct = AESGCM(self._key_for(self.svn)).encrypt(nonce, data, header)
        return struct.pack(">I", len(header)) + header + nonce + ct

    def unseal(self, blob: bytes, name: str) -> bytes:
        try:
            (n,) = struct.unpack(">I", blob[:4])
            header_bytes = blob[4 : 4 + n]
            header = json.loads(header_bytes)
            svn = int(header["svn"])
        except (struct.error, ValueError, KeyError, TypeError):
            raise ProtocolAbort("sealed blob is malformed", step="unseal") from None
        if header.get("name") != name:
            raise ProtocolAbort(f"sealed blob holds {header.get('name')!r}, not {name!r}", step="unseal")
        if svn > self.svn:
            raise PolicyDenied(f"state sealed at svn {svn} cannot be opened at svn {self.svn}", step="unseal",
                               remedy="an older version never reads a newer version's state")
        nonce, ct = blob[4 + n : 16 + n], blob[16 + n :]
        try:
            return AESGCM(self._key_for(svn)).decrypt(nonce, ct, header_bytes)
        except InvalidTag:
            raise ProtocolAbort("sealed blob does not open: another signer, product or platform",
                                step="unseal") from None

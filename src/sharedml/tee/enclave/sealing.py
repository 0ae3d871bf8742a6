"""Sealed state: data encrypted to the enclave's identity (8.3-3), bound to its signer or its measurement.

The platform derives seal keys from a secret fused into the platform (SGX's
EGETKEY; here the simulated quoting side, :meth:`SimQuoter.seal_key`) and one
of two identities, chosen per blob (``bind``):

* ``signer`` (MRSIGNER policy; the default) — the enclave's signer and
  product id, and a security version the platform grants only if it is ≤ the
  enclave's own measured version:

  1. :meth:`SealedStore.seal` encrypts with the key for the enclave's *own*
     svn and writes that svn into the (authenticated) header;
  2. :meth:`SealedStore.unseal` asks for the key of the svn in the header — a
     newer version gets it (it can read older state), an older version is
     refused (it can never read state written by a newer one), and another
     signer or product derives a different key and fails authentication.

  A blob so sealed survives an upgrade: every later build of the release key
  opens it, which is what a model registered for batch scoring needs.

* ``measurement`` (MRENCLAVE policy) — the exact measured code: only an
  enclave of the same measurement on the same platform derives the key
  (``measurement_key``), so no other build opens it, not even a newer one of
  the same signer. It does not survive an upgrade: a model so sealed must be
  trained again after each new build. An owner who does not trust every
  future build of the signer asks for it (``seal: measurement`` in its data
  policy, :class:`~sharedml.tee.authz.DataPolicy`).

Reveals: to the host, the sealed blob's size, name, svn and binding.
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
#: What a blob is sealed to: every build of the signer (from its svn on), or one measurement.
BINDINGS = ("signer", "measurement")


class SealedStore:
    def __init__(self, key_for_svn: KeySource, svn: int, *,
                 measurement_key: Callable[[], bytes] | None = None) -> None:
        self._key_for = key_for_svn
        self._measurement_key = measurement_key
        self.svn = svn

    def seal(self, name: str, data: bytes, bind: str = "signer") -> bytes:
        if bind not in BINDINGS:
            raise PolicyDenied(f"cannot seal to {bind!r}", step="seal", remedy=f"use one of {BINDINGS}")
        fields: dict[str, object] = {"v": 1, "name": name, "svn": self.svn}
        if bind == "measurement":
            fields["bind"] = bind  # (absent: signer, as every blob before the choice existed)
        header = json.dumps(fields).encode()
        nonce = os.urandom(12)
        ct = AESGCM(self._key(bind, self.svn)).encrypt(nonce, data, header)
        return struct.pack(">I", len(header)) + header + nonce + ct

    def _key(self, bind: str, svn: int) -> bytes:
        if bind == "signer":
            return self._key_for(svn)
        if self._measurement_key is None:
            raise PolicyDenied("this enclave's attester derives no measurement-bound seal key", step="seal",
                               remedy="seal to the signer, or run on an attester that has one (sim, gramine)")
        return self._measurement_key()

    def unseal(self, blob: bytes, name: str) -> bytes:
        try:
            (n,) = struct.unpack(">I", blob[:4])
            header_bytes = blob[4 : 4 + n]
            header = json.loads(header_bytes)
            svn = int(header["svn"])
            bind = str(header.get("bind", "signer"))
        except (struct.error, ValueError, KeyError, TypeError):
            raise ProtocolAbort("sealed blob is malformed", step="unseal") from None
        if header.get("name") != name:
            raise ProtocolAbort(f"sealed blob holds {header.get('name')!r}, not {name!r}", step="unseal")
        if bind not in BINDINGS:
            raise ProtocolAbort(f"sealed blob is bound to {bind!r}", step="unseal")
        if bind == "signer" and svn > self.svn:
            raise PolicyDenied(f"state sealed at svn {svn} cannot be opened at svn {self.svn}", step="unseal",
                               remedy="an older version never reads a newer version's state")
        nonce, ct = blob[4 + n : 16 + n], blob[16 + n :]
        try:
            return AESGCM(self._key(bind, svn)).decrypt(nonce, ct, header_bytes)
        except InvalidTag:
            who = "another measurement or platform" if bind == "measurement" else "another signer, product or platform"
            raise ProtocolAbort(f"sealed blob does not open: {who}", step="unseal") from None

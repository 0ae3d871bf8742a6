"""Sum vectors across parties revealing only the total: pairwise-masked sums.

Protocol (parties ``P_0..P_{n-1}``, vector ``x_i`` at ``P_i``):

1. Each pair ``i < j`` runs an X25519 key agreement over the channel and
   derives a 128-bit AES key ``k_ij`` (HKDF-SHA256).
2. ``P_i`` encodes ``x_i`` in fixed point on Z_2^64 and sends every party
   ``y_i = x_i + Σ_{j>i} PRG(k_ij) − Σ_{j<i} PRG(k_ji)``.
3. Everyone adds the ``y_i``: the masks cancel and the total remains.

Reveals: the total to every party; each ``y_i`` alone is uniformly random.
Semi-honest; two honest parties' values stay hidden (only their sum is
implied) however many others collude. No dropout tolerance: a party that
leaves aborts the sum. Reference: Bonawitz et al., "Practical secure
aggregation for privacy-preserving machine learning", CCS 2017 (without the
secret-shared recovery).
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.crypto.prg import KEY_BYTES, Prg
from sharedml.errors import ProtocolAbort
from sharedml.session import Session


class SecureSummer:
    """Pair keys for one session; each :meth:`sum` uses fresh mask nonces."""

    def __init__(self, session: Session, frac_bits: int = 20) -> None:
        self.s = session
        self.fp = FixedPoint(frac_bits)
        self._calls = 0
        sk = X25519PrivateKey.generate()
        pub = sk.public_key().public_bytes_raw()
        theirs = session.channel.all_gather("ssum/pub", pub)
        self._prg: dict[str, Prg] = {}
        for peer in session.others:
            raw = theirs[peer]
            if not isinstance(raw, bytes) or len(raw) != 32:
                raise ProtocolAbort("malformed key share", party=peer, step="secure sum")
            shared = sk.exchange(X25519PublicKey.from_public_bytes(raw))
            pair = "|".join(sorted((session.party, peer)))
            key = HKDF(hashes.SHA256(), KEY_BYTES, None, f"sharedml/ssum/{pair}".encode()).derive(shared)
            self._prg[peer] = Prg(key)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """The element-wise sum of every party's ``values`` (same shape everywhere)."""
        self._calls += 1
        values = np.asarray(values, dtype=np.float64)
        masked = self.fp.encode(values, what="secure-sum input")
        me = self.s.index
        for peer, prg in self._prg.items():
            mask = prg.uint64(self._calls, values.shape)
            if self.s.peers.index(peer) > me:
                masked += mask
            else:
                masked -= mask
        got = self.s.channel.all_gather(f"ssum/{self._calls}", masked)
        total = np.zeros(values.shape, dtype=np.uint64)
        for peer, v in got.items():
            if not isinstance(v, np.ndarray) or v.shape != values.shape or v.dtype != np.uint64:
                raise ProtocolAbort("malformed masked vector", party=peer, step="secure sum")
            total += v
        return self.fp.decode(total)

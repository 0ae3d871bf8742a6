"""HEProvider: two providers make their own correlated randomness with Paillier.

No third party. P_0 holds a Paillier key pair (made at setup; the public key
goes to P_1). Each party draws its shares of every *free* component from its
own AES-CTR PRG (keyed from its session secret); the *derived* components
(c = a·b, a @ b, daBits, AND triples) need the cross terms between the two
parties' shares, which this protocol computes:

1. P_0 encrypts its shares u (elements, matrix entries or single bits) under
   its key and sends them (for a fixed operand: once, then reused).
2. P_1 evaluates each cross term homomorphically from the ciphertexts and its
   own shares v — e.g. Enc(a0·b1 + b0·a1), Enc(A0 @ B1 + A1 @ B0) entry by
   entry, or for bits Enc(a0_j·b1_j + b0_j·a1_j) — adds a fresh mask s drawn
   uniformly from [0, 2^(w-1)), w = (bits of the term) + σ + 1 with σ = 40,
   packs as many terms as fit into one plaintext (Horner in the exponent), and
   sends the ciphertexts back.
3. P_0 decrypts t = term + s (over the integers, no wrap). Arithmetic: P_0
   keeps t mod 2^64 and P_1 keeps -s mod 2^64. Boolean: P_0 keeps t mod 2 and
   P_1 keeps s mod 2 (the parity of a sum is the XOR of the products).

Truncation pairs are not made here (the ``MPC`` runtime then uses the
two-round truncation of :mod:`sharedml.mpc.truncation`).

Reveals: P_1 sees only ciphertexts under P_0's key (semantic security, DCR
assumption); P_0 sees term + s, statistically within 2^-σ of uniform-looking
masks, so it learns nothing about P_1's shares. Neither learns the other's
shares or any secret. Security model: semi-honest, two parties, no third
party; a malicious P_1 could return wrong terms (no authentication of
material).

Cost: one Paillier encryption per element of P_0's operand (per *bit* for
boolean material, so comparisons are slow under this provider) and a
decryption per packed plaintext; ``bench/mpc.py`` prints the rates.

Reference: Gilboa, "Two party RSA key generation", CRYPTO 1999 (products of
additive shares); Damgård, Pastro, Smart, Zakarias, SPDZ, CRYPTO 2012 §5
(triples from additively homomorphic encryption); Paillier, EUROCRYPT 1999.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

import gmpy2
import numpy as np
from gmpy2 import mpz

from sharedml.crypto import paillier
from sharedml.crypto.prg import Prg, derive_key
from sharedml.errors import ConfigError, ProtocolAbort
from sharedml.mpc.dealer import FixedMasks
from sharedml.mpc.material import Kind, Request, components, draw
from sharedml.mpc.provider import Material, RandomnessProvider
from sharedml.session import Session

if TYPE_CHECKING:
    from sharedml.mpc.context import MPC

SIGMA = 40
_MASK64 = (1 << 64) - 1


def _bits(words: np.ndarray) -> np.ndarray:
    """(count, 64) array of the bits of each word, least significant first."""
    flat = np.ascontiguousarray(words, dtype=np.uint64).ravel()
    return np.unpackbits(flat.view(np.uint8), bitorder="little").reshape(-1, 64)


def _words(bits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    packed = np.packbits(bits.astype(np.uint8).reshape(-1, 64), axis=1, bitorder="little")
    return packed.view(np.uint64).reshape(shape)


class HEProvider(RandomnessProvider):
    """Two-party material from Paillier (see module docstring)."""

    name = "he"
    supports_pairs = False

    def __init__(self, session: Session, key_bits: int = 2048) -> None:
        super().__init__()
        self.key_bits = key_bits
        self._session = session
        self._channel = session.channel.scope("he")
        self._prg = Prg(derive_key(session.seed, f"he-provider/{session.party}"))
        self._counter = 0
        # this party's shares of fixed masks, and their limb splits (made once)
        self._fixed = FixedMasks()
        self._fixed_enc: dict[int, np.ndarray] = {}
        self._pk: paillier.PaillierPublicKey | None = None
        self._sk: paillier.PaillierPrivateKey | None = None

    def attach(self, mpc: MPC) -> None:
        super().attach(mpc)
        if mpc.n != 2:
            raise ConfigError("HEProvider works for exactly two computing parties", party=mpc.party)
        self._index = mpc.index
        self._other = mpc.others[0]
        if self._index == 0:
            self._pk, self._sk = paillier.generate_keypair(self.key_bits)
            self._channel.send(self._other, "pk", self._pk.to_bytes())
        else:
            raw = self._channel.recv(self._other, "pk")
            if not isinstance(raw, bytes):
                raise ProtocolAbort("malformed Paillier key", party=self._other, step="he.setup")
            self._pk = paillier.PaillierPublicKey.from_bytes(raw)
            if self._pk.n.bit_length() < self.key_bits:
                raise ConfigError(
                    f"peer's Paillier key has {self._pk.n.bit_length()} bits, "
                    f"this party requires {self.key_bits}",
                    party=self._other,
                    step="he.setup",
                )

    # -- the request -----------------------------------------------------------------
    def request(
        self, kind: Kind, dims: tuple[int, ...], rows: np.ndarray | None = None
    ) -> Material:
        self._counter += 1
        self.requests += 1
        req = Request(kind, self._counter, tuple(int(d) for d in dims), rows)
        if kind == Kind.TRUNC:
            raise ConfigError("HEProvider deals no truncation pairs; use two-round truncation")

        def fixed_shape(fid: int) -> tuple[int, int]:
            m, k = self._fixed[fid].shape
            return m, k

        comps = components(req, fixed_shape)
        shares = {c.name: draw(self._prg, req, j, c) for j, c in enumerate(comps) if not c.derived}
        tag = f"{kind.name}#{req.counter}"
        if kind == Kind.FIXED_MASK:
            self._fixed[req.counter] = shares["a"]
            self._fixed_setup(tag, req.counter, shares["a"])
        elif kind == Kind.MUL:
            a, b = shares["a"], shares["b"]
            cross = self._arith(
                tag, [a, b], 129, lambda ea, eb: self._mul_terms(ea, eb, a, b), a.size
            )
            shares["c"] = a * b + cross.reshape(a.shape)
        elif kind == Kind.MATMUL:
            a, b = shares["a"], shares["b"]
            bits = 129 + int(a.shape[1]).bit_length()
            cross = self._arith(
                tag,
                [a, b],
                bits,
                lambda ea, eb: self._matmul_terms(ea, eb, a, b),
                a.shape[0] * b.shape[1],
            )
            from sharedml.crypto import ring

            shares["c"] = ring.matmul(a, b) + cross.reshape(a.shape[0], b.shape[1])
        elif kind == Kind.FIXED_MATMUL:
            shares["c"] = self._fixed_matmul(tag, req, shares["b"])
        elif kind == Kind.DABIT:
            rb = shares["rb"]
            cross = self._arith(tag, [rb], 2, lambda eu: self._select_terms(eu, rb), rb.size)
            cross = cross.reshape(rb.shape)
            shares["ra"] = rb - (cross << np.uint64(1))
        elif kind in (Kind.AND, Kind.ADDER):
            shares.update(self._boolean(tag, req, shares))
        else:
            raise ConfigError(f"HEProvider cannot make {kind.name} material")
        return Material(req.counter, shares)

    # -- arithmetic cross terms ------------------------------------------------------
    def _arith(
        self,
        tag: str,
        mine: list[np.ndarray],
        term_bits: int,
        terms: Callable[..., list[mpz]],
        count: int,
        *,
        boolean: bool = False,
        encrypted: list[np.ndarray] | None = None,
    ) -> np.ndarray:
        """P_0: encrypt ``mine``; P_1: evaluate ``terms`` on the ciphertexts.

        Returns this party's share of each of the ``count`` terms (mod 2^64, or
        mod 2 if ``boolean``).
        """
        pk = self._pk
        assert pk is not None  # set in attach
        width = term_bits + SIGMA + 1
        per = max(1, pk.plaintext_bits // width)
        if self._index == 0:
            if encrypted is None:
                flat = np.concatenate([m.ravel() for m in mine]).tolist()
                self._channel.send(self._other, tag, pk.pack(pk.encrypt_many(flat)))
            packed = pk.unpack(self._channel.recv(self._other, tag + "/r"))
            assert self._sk is not None
            out: list[int] = []
            mask = (1 << width) - 1
            for c in packed:
                t = self._sk.decrypt(c)
                for _ in range(per):
                    out.append(t & mask)
                    t >>= width
            if len(out) < count or len(packed) != -(-count // per):
                raise ProtocolAbort(
                    f"he: expected {count} packed terms", party=self._other, step=tag
                )
            return self._reduce(out[:count], boolean)
        if encrypted is None:
            sizes = [m.size for m in mine]
            cts = pk.unpack(self._channel.recv(self._other, tag))
            if len(cts) != sum(sizes):
                raise ProtocolAbort(
                    f"he: expected {sum(sizes)} ciphertexts, got {len(cts)}",
                    party=self._other,
                    step=tag,
                )
            parts, at = [], 0
            for size, m in zip(sizes, mine, strict=True):
                parts.append(np.array([*cts[at:at + size], None], dtype=object)[:-1].reshape(m.shape))
                at += size
        else:
            parts = encrypted
        values = terms(*parts)
        if len(values) != count:
            raise ProtocolAbort(f"he: {len(values)} terms, expected {count}", step=tag)
        masks = [secrets.randbits(width - 1) for _ in values]
        packed_out = []
        shift = mpz(1) << width
        for lo in range(0, len(values), per):
            group = values[lo : lo + per]
            acc = group[-1]
            for ct in reversed(group[:-1]):
                acc = pk.add(pk.mul_plain(acc, shift), ct)
            plain = 0
            for s in reversed(masks[lo : lo + per]):
                plain = (plain << width) | s
            packed_out.append(pk.add(acc, pk.encrypt(plain)))
        self._channel.send(self._other, tag + "/r", pk.pack(packed_out))
        share = [-s for s in masks] if not boolean else masks
        return self._reduce(share, boolean)

    @staticmethod
    def _reduce(values: list[int], boolean: bool) -> np.ndarray:
        if boolean:
            return np.array([v & 1 for v in values], dtype=np.uint64)
        return np.array([v & _MASK64 for v in values], dtype=np.uint64)

    def _mul_terms(self, ea: np.ndarray, eb: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[mpz]:
        pk = self._pk
        assert pk is not None
        out = []
        for ca, cb, va, vb in zip(ea.ravel(), eb.ravel(), a.ravel().tolist(), b.ravel().tolist(), strict=True):
            out.append(pk.add(pk.mul_plain(ca, vb), pk.mul_plain(cb, va)))
        return out

    def _dot(self, cts: np.ndarray, coeffs: list[int]) -> mpz:
        pk = self._pk
        assert pk is not None
        acc = mpz(1)
        for c, k in zip(cts, coeffs, strict=True):
            if k:
                acc = acc * gmpy2.powmod(c, k, pk.n_sq) % pk.n_sq
        return acc

    def _matmul_terms(self, ea: np.ndarray, eb: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[mpz]:
        # cross = A0 @ B1 + A1 @ B0, entry (i, j) = Σ_l A0[i,l]·B1[l,j] + A1[i,l]·B0[l,j]
        return self._bilinear(ea, b, a, eb)

    def _bilinear(self, e_left: np.ndarray, right: np.ndarray, left: np.ndarray, e_right: np.ndarray) -> list[mpz]:
        pk = self._pk
        assert pk is not None
        m, n = e_left.shape[0], e_right.shape[1]
        rt, lt = right.T.tolist(), left.tolist()
        out = []
        for i in range(m):
            for j in range(n):
                t1 = self._dot(e_left[i], rt[j])
                t2 = self._dot(e_right[:, j], lt[i])
                out.append(t1 * t2 % pk.n_sq)
        return out

    def _select_terms(self, eu: np.ndarray, v: np.ndarray) -> list[mpz]:
        return [c if bit else mpz(1) for c, bit in zip(eu.ravel(), v.ravel().tolist(), strict=True)]

    # -- a fixed operand ----------------------------------------------------------------
    def _fixed_setup(self, tag: str, fid: int, a: np.ndarray) -> None:
        pk = self._pk
        assert pk is not None
        if self._index == 0:
            self._channel.send(self._other, tag, pk.pack(pk.encrypt_many(a.ravel().tolist())))
        else:
            cts = pk.unpack(self._channel.recv(self._other, tag))
            if len(cts) != a.size:
                raise ProtocolAbort("he: fixed operand of the wrong size", party=self._other, step=tag)
            self._fixed_enc[fid] = np.array([*cts, None], dtype=object)[:-1].reshape(a.shape)

    def _fixed_matmul(self, tag: str, req: Request, b: np.ndarray) -> np.ndarray:
        from sharedml.crypto import ring

        fid, transpose, _ = req.dims
        a, limbs = self._fixed[fid], self._fixed.limbs(fid)
        if req.rows is not None:
            a, limbs = a[req.rows], limbs.rows(req.rows)
        if transpose:
            a, limbs = a.T, limbs.T
        bits = 129 + int(a.shape[1]).bit_length()
        if self._index == 0:
            cross = self._arith(tag, [b], bits, lambda eb: [], a.shape[0] * b.shape[1])
        else:
            ea = self._fixed_enc[fid]
            ea = ea if req.rows is None else ea[req.rows]
            ea = ea.T if transpose else ea

            def terms(eb: np.ndarray) -> list[mpz]:
                return self._bilinear(ea, b, a, eb)

            cross = self._arith(tag, [b], bits, terms, a.shape[0] * b.shape[1])
        return ring.matmul(limbs, b) + cross.reshape(a.shape[0], b.shape[1])

    # -- boolean material ------------------------------------------------------------------
    def _boolean(self, tag: str, req: Request, shares: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        a, b = shares["a"], shares["b"]
        shape = a.shape
        abits, bbits = _bits(a), _bits(b)
        shift = req.dims[0] if req.kind == Kind.ADDER else 0
        count = abits.shape[0]

        def terms(ea: np.ndarray, eb: np.ndarray) -> list[mpz]:
            pk = self._pk
            assert pk is not None
            ea, eb = ea.reshape(count, 64), eb.reshape(count, 64)
            out = []
            for w in range(count):
                for j in range(64):
                    acc = mpz(1)
                    if bbits[w, j]:
                        acc = ea[w, j]
                    if abits[w, j]:
                        acc = acc * eb[w, j] % pk.n_sq
                    out.append(acc)
            if shift:
                for w in range(count):
                    for j in range(64):
                        acc = mpz(1)
                        if j >= shift and abits[w, j - shift]:
                            acc = ea[w, j]
                        if j >= shift and abits[w, j]:
                            acc = acc * ea[w, j - shift] % pk.n_sq
                        out.append(acc)
            return out

        mine = [abits.ravel().astype(np.uint64), bbits.ravel().astype(np.uint64)]
        cross = self._arith(tag, mine, 2, terms, count * 64 * (2 if shift else 1), boolean=True)
        n_and = count * 64
        c1 = (a & b) ^ _words(cross[:n_and].reshape(count, 64), shape)
        out = {"c": c1} if req.kind == Kind.AND else {"c1": c1}
        if shift:
            us = np.uint64(shift)
            out["c2"] = (a & (a << us)) ^ _words(cross[n_and:].reshape(count, 64), shape)
        return out

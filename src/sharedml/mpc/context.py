"""The MPC runtime of one party: parties, channel, precision, randomness.

:class:`MPC` is what every protocol in :mod:`sharedml.mpc` runs against. It
holds no global state (STYLE.md 3): a party makes one from its
:class:`~sharedml.session.Session` and a
:class:`~sharedml.mpc.provider.RandomnessProvider`, and every
:class:`~sharedml.mpc.tensor.SharedTensor` keeps a reference to it.

Construction runs a handshake (one round): every computing party sends every
other its ring size, fractional bits, protocol version, party list, provider
and truncation mode, and each refuses a peer that differs with a
:class:`~sharedml.errors.ConfigError` naming that peer. Party ``i`` also sends
party ``j > i`` a fresh 128-bit seed; the pair derives an AES-CTR PRG from it,
so :meth:`MPC.share` needs no traffic beyond the shape.

Every protocol step gets a unique tag (operation name + a counter that all
parties step in lock step), and every received share is checked for dtype and
shape: a wrong-sized share is a :class:`~sharedml.errors.ProtocolAbort`
naming the operation and the sending party, never a hang or a silent
broadcast.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sharedml.crypto import ring
from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.crypto.prg import KEY_BYTES, Prg, derive_key
from sharedml.errors import ConfigError, DataError, ProtocolAbort
from sharedml.session import Session

if TYPE_CHECKING:
    from sharedml.mpc.provider import RandomnessProvider
    from sharedml.mpc.tensor import SharedTensor

#: Bumped when parties of different versions would request different material
#: (2: bit_mul's DABIT_MUL, dealer bundles, TRUNC_FIXED in SS-LR; 3: the dealer
#: sends TRUNC's r_msb correction mod 2^f, packed; two-party truncation opens
#: at P_0 only, which returns msb(c); 4: TRUNC_FIXED may name segments of rows,
#: SS-LR's groups of mini-batches).
PROTOCOL_VERSION = 4
TRUNC_MODES = ("pair", "local")


class MPC:
    """One party's secret-sharing runtime (see module docstring).

    Args:
        session: this party's session; its ``frac_bits`` sets the precision.
        provider: correlated randomness (its ``helpers`` are not share holders).
        trunc: ``"pair"`` — exact-range probabilistic truncation with one
            round (default; :func:`sharedml.mpc.truncation.truncate`) — or
            ``"local"`` — SecureML's local truncation (no round, two parties,
            small failure probability).
        scope: channel scope of this runtime's messages; give runtimes that
            share a session different scopes.
    """

    def __init__(
        self,
        session: Session,
        provider: RandomnessProvider,
        *,
        trunc: str = "pair",
        scope: str = "mpc",
    ) -> None:
        if trunc not in TRUNC_MODES:
            raise ConfigError(f"trunc must be one of {TRUNC_MODES}, got {trunc!r}")
        self.session = session
        self.party = session.party
        self.parties: tuple[str, ...] = tuple(
            p for p in session.peers if p not in provider.helpers
        )
        if self.party not in self.parties:
            raise ConfigError(f"{self.party!r} is a helper, not a computing party")
        if len(self.parties) < 2:
            raise ConfigError("secret sharing needs at least two computing parties")
        if trunc == "local" and len(self.parties) != 2:
            raise ConfigError("local truncation works for two parties only; use trunc='pair'")
        self.index = self.parties.index(self.party)
        self.n = len(self.parties)
        self.others = tuple(p for p in self.parties if p != self.party)
        self.fp = FixedPoint(session.frac_bits)
        self.frac_bits = session.frac_bits
        self.trunc_mode = trunc
        self.provider = provider
        self.channel = session.channel.scope(scope)
        self._step = 0
        self._share_count = 0
        self.local_prg = Prg(derive_key(session.seed, f"mpc/local/{self.party}"))
        self._local_count = 0
        self._pair: dict[str, Prg] = {}
        self._handshake()
        provider.attach(self)

    # -- lifecycle -----------------------------------------------------------------
    def __enter__(self) -> MPC:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the provider (a dealer stops serving this job)."""
        self.provider.close()

    def _config(self) -> dict[str, Any]:
        return {
            "ring_bits": ring.BITS,
            "frac_bits": self.frac_bits,
            "version": PROTOCOL_VERSION,
            "parties": list(self.parties),
            "provider": self.provider.name,
            "trunc": self.trunc_mode,
        }

    def _handshake(self) -> None:
        mine = self._config()
        seeds = {}
        for j, p in enumerate(self.parties):
            if p == self.party:
                continue
            msg = dict(mine)
            if j > self.index:
                seeds[p] = secrets.token_bytes(KEY_BYTES)
                msg["seed"] = seeds[p].hex()
            self.channel.send(p, "handshake", json.dumps(msg).encode())
        for j, p in enumerate(self.parties):
            if p == self.party:
                continue
            raw = self.channel.recv(p, "handshake")
            try:
                theirs = json.loads(raw) if isinstance(raw, bytes) else None
                if not isinstance(theirs, dict):
                    raise ValueError("not an object")
                seed = bytes.fromhex(theirs.pop("seed")) if j < self.index else seeds[p]
            except (ValueError, KeyError, TypeError) as exc:
                raise ProtocolAbort(
                    f"malformed MPC handshake from {p!r}: {exc}", party=p, step="mpc.handshake"
                ) from exc
            for key, value in mine.items():
                if theirs.get(key) != value:
                    raise ConfigError(
                        f"MPC handshake: party {p!r} uses {key}={theirs.get(key)!r} but party "
                        f"{self.party!r} uses {key}={value!r}",
                        party=p,
                        step="mpc.handshake",
                        remedy="run every party with the same ring, frac_bits, provider and "
                        "sharedml version",
                    )
            self._pair[p] = Prg(derive_key(seed, "mpc/share"))

    # -- steps and messages ------------------------------------------------------------
    def tag(self, op: str) -> str:
        """A fresh tag for one step of ``op`` (same sequence at every party)."""
        self._step += 1
        return f"{op}#{self._step}"

    def local_words(self, shape: tuple[int, ...]) -> np.ndarray:
        """Fresh secret uniform words known to this party only."""
        self._local_count += 1
        return self.local_prg.uint64(self._local_count, shape)

    def recv_array(self, frm: str, tag: str, shape: tuple[int, ...], op: str) -> np.ndarray:
        """Receive a uint64 array of exactly ``shape`` from ``frm``."""
        value = self.channel.recv(frm, tag)
        if not isinstance(value, np.ndarray) or value.dtype != np.uint64:
            kind = type(value).__name__ if not isinstance(value, np.ndarray) else value.dtype
            raise ProtocolAbort(
                f"{op}: party {frm!r} sent {kind}, expected ring elements (uint64)",
                party=frm,
                step=op,
                remedy="run the same sharedml version on every party",
            )
        if value.shape != tuple(shape):
            raise ProtocolAbort(
                f"{op}: party {frm!r} sent a share of shape {value.shape}, expected {tuple(shape)}",
                party=frm,
                step=op,
                remedy=f"check that party {frm!r} called {op} on a tensor of the same shape",
            )
        return value

    def exchange(self, op: str, value: np.ndarray, to: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Send ``value`` to ``to`` (default every other party), receive theirs.

        Only parties in ``to`` receive; the result holds the values of every
        party that sent to this one (all others when this party is in ``to``).
        """
        tag = self.tag(op)
        targets = self.others if to is None else tuple(p for p in to if p != self.party)
        value = np.ascontiguousarray(value)
        for p in targets:
            self.channel.send(p, tag, value)
        got = {self.party: value}
        if to is None or self.party in to:
            for p in self.others:
                got[p] = self.recv_array(p, tag, value.shape, op)
        return got

    def open(self, op: str, value: np.ndarray, *, boolean: bool = False) -> np.ndarray:
        """Reconstruct a shared value at every party (sum, or XOR if ``boolean``)."""
        got = self.exchange(op, value)
        first, *rest = (got[p] for p in self.others)
        out = value ^ first if boolean else value + first
        for other in rest:
            if boolean:
                out ^= other
            else:
                out += other
        return out

    def open_many(self, op: str, values: Sequence[np.ndarray], *, boolean: bool = False) -> list[np.ndarray]:
        """Open several values in one message per peer."""
        flat = np.concatenate([np.ravel(v) for v in values]) if values else np.empty(0, np.uint64)
        opened = self.open(op, flat.astype(np.uint64, copy=False), boolean=boolean)
        out, at = [], 0
        for v in values:
            out.append(opened[at : at + v.size].reshape(v.shape))
            at += v.size
        return out

    # -- entering and leaving the shared world ---------------------------------------------
    def share(
        self,
        value: object | None,
        owner: str,
        *,
        encoded: bool = False,
        scale: int | None = None,
        shape: tuple[int, ...] | None = None,
    ) -> SharedTensor:
        """Secret-share ``value``, which ``owner`` holds; the others pass ``None``.

        1. ``owner`` sends the shape (public) to every other party — unless
           every party passes the same ``shape`` (a shape the protocol already
           fixes, e.g. a batch's): then nothing is sent.
        2. For every other party ``j``, both ``owner`` and ``j`` draw
           ``r_j = AES-CTR(k_{owner,j}, t)`` from their pair key; ``j`` keeps
           ``r_j``, ``owner`` keeps ``x - Σ_j r_j``.

        Reveals: the shape. Semi-honest; any n-1 parties learn nothing of ``x``.
        ``encoded=True`` takes ring elements as they are (``scale`` gives their
        fractional bits; 0 for integers). The owner's value must have the
        ``shape`` it was given (a :class:`DataError` otherwise).
        """
        from sharedml.mpc.tensor import SharedTensor

        if owner not in self.parties:
            raise ConfigError(f"share: owner {owner!r} is not a computing party {self.parties}")
        self._share_count += 1
        tag = self.tag("share")
        if self.party == owner:
            if value is None:
                raise DataError("share: the owner must pass a value", party=self.party, step="share")
            if encoded:
                enc = ring.as_ring(np.asarray(value))
                sc = self.frac_bits if scale is None else scale
            else:
                enc = self.fp.encode(value, what="share input")
                sc = self.frac_bits
            if shape is None:
                header = np.array([sc, *enc.shape], dtype=np.uint64)
                for p in self.others:
                    self.channel.send(p, tag, header)
            elif enc.shape != tuple(shape):
                raise DataError(
                    f"share: the value has shape {enc.shape}, the protocol fixed {tuple(shape)}",
                    party=self.party,
                    step="share",
                )
            mine = enc.copy()
            for p in self.others:
                mine -= self._pair[p].uint64(self._share_count, enc.shape)
            return SharedTensor(self, mine, sc)
        if value is not None:
            raise DataError(
                f"share: only the owner {owner!r} passes a value; others pass None",
                party=self.party,
                step="share",
            )
        if shape is not None:
            sc = self.frac_bits if scale is None else scale
            words = self._pair[owner].uint64(self._share_count, tuple(shape))
            return SharedTensor(self, words, sc)
        head = self.channel.recv(owner, tag)
        if not isinstance(head, np.ndarray) or head.dtype != np.uint64 or head.ndim != 1 or not head.size:
            raise ProtocolAbort("share: malformed shape header", party=owner, step="share")
        sc, shape = int(head[0]), tuple(int(d) for d in head[1:])
        return SharedTensor(self, self._pair[owner].uint64(self._share_count, shape), sc)

    def public(self, value: object) -> SharedTensor:
        """A public value as a (trivial) sharing: party 0 holds it, others zero."""
        from sharedml.mpc.tensor import SharedTensor

        enc = self.fp.encode(value, what="public value")
        share = enc if self.index == 0 else np.zeros_like(enc)
        return SharedTensor(self, share, self.frac_bits)

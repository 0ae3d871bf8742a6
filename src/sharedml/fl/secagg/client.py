"""The client role of secure aggregation: one masked submission per round.

See :mod:`sharedml.fl.secagg` for the protocol, what it reveals and the
threat model. A client talks to the server only; what another client sends
it arrives sealed under their pairwise key, relayed by the server.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sharedml.errors import DataError, ProtocolAbort
from sharedml.fl.quantize import Quantizer
from sharedml.fl.secagg import primitives as P
from sharedml.fl.secagg import wire
from sharedml.fl.secagg.config import DOWN, UP, SecAggConfig
from sharedml.session import Session

log = logging.getLogger("sharedml.fl.secagg")
T = TypeVar("T")


@dataclass(frozen=True)
class Submission:
    """How one round went for this client."""

    round: int
    included: bool
    reason: str = ""


def share_ad(round_id: int, frm: int, to: int) -> bytes:
    """Associated data binding a sealed share bundle to its round and pair."""
    return struct.pack("<QHH", round_id, frm, to)


@dataclass
class _RoundState:
    """One round's secrets at this client: key pairs, its mask seed, the shares it holds."""

    round: int
    quantizer: Quantizer
    c_key: X25519PrivateKey = field(default_factory=P.new_private_key)
    s_key: X25519PrivateKey = field(default_factory=P.new_private_key)
    seed: bytes = field(default_factory=lambda: os.urandom(P.KEY_BYTES))
    keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    #: share bundles held, by owner: the share of its mask key, then of its seed
    inbox: dict[int, bytes] = field(default_factory=dict)
    #: the AES-GCM key this client shares with each peer for sealing shares
    pair_keys: dict[int, bytes] = field(default_factory=dict)
    #: the masked-input message, masked with every peer that advertised keys
    masked: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))


class SecAggClient:
    """This party's side of every secure-aggregation round of one job."""

    def __init__(self, session: Session, config: SecAggConfig) -> None:
        if session.party not in config.clients:
            raise ProtocolAbort(
                f"{session.party!r} is not a client of this aggregation", party=session.party
            )
        self.s = session
        self.config = config
        self.index = config.index(session.party)
        self.quantizer = config.quantizer

    def submit(
        self, round_id: int, update: np.ndarray, quantizer: Quantizer | None = None
    ) -> Submission:
        """Take part in round ``round_id`` with ``update`` (float, 1-D), encoded by
        ``quantizer`` (default: the config's; the server must use the same).

        An update this client cannot submit (NaN/inf, outside the
        quantisation range) is announced to the server as an abstention with
        the reason, and the round goes on without it. Returns whether this
        client's input is in the round's sum.
        """
        x = np.asarray(update)
        q = quantizer or self.quantizer
        try:
            if x.ndim != 1 or x.dtype.kind != "f":
                raise DataError(f"an update must be a 1-D float vector, got {x.dtype} {x.shape}")
            q.check(x)
        except DataError as exc:
            return self._abstain(round_id, exc.message)
        state = _RoundState(round_id, q)
        pair = (P.public_bytes(state.c_key), P.public_bytes(state.s_key))
        self._send(wire.Kind.ADVERTISE, round_id, wire.advertise_body(*pair))
        self._self_masked(state, x)  # while the server gathers every client's keys
        for step in (self._share_keys, self._masked_input, self._unmask):
            outcome = step(state, x)
            if outcome is not None:
                return outcome
        return Submission(round_id, True)

    # -- the stages ------------------------------------------------------------------
    def _share_keys(self, st: _RoundState, x: np.ndarray) -> Submission | None:
        msg = self._await(st.round, wire.Kind.KEYS)
        if isinstance(msg, Submission):
            return msg
        st.keys = self._parse(wire.parse_keys, msg.body, "KEYS")
        mine = (P.public_bytes(st.c_key), P.public_bytes(st.s_key))
        if st.keys.get(self.index) != mine:
            raise self._abort(st.round, "the server's key list does not hold this client's keys")
        self._require(st.round, len(st.keys), "advertised keys")
        xs = [i + 1 for i in st.keys]
        s_shares = P.share_secret(P.private_bytes(st.s_key), self.config.threshold, xs)
        b_shares = P.share_secret(st.seed, self.config.threshold, xs)
        sealed: dict[int, bytes] = {}
        for v, (c_pk, _) in st.keys.items():
            bundle = s_shares[v + 1] + b_shares[v + 1]
            if v == self.index:
                st.inbox[v] = bundle  # its own shares, revealed only as the others' are
                continue
            st.pair_keys[v] = self._agree(st.c_key, c_pk, "c", st.round, v)
            sealed[v] = P.seal(st.pair_keys[v], bundle, share_ad(st.round, self.index, v))
        self._send(wire.Kind.SHARES, st.round, wire.entries_body(sealed))
        # mask now, with every peer that has keys, while the server gathers the shares
        peers = [v for v in st.keys if v != self.index]
        P.apply_masks(wire.body(st.masked), self._masks(st, peers, +1))
        return None

    def _self_masked(self, st: _RoundState, x: np.ndarray) -> None:
        """``q(x) + PRG(b_u)`` into the round's message buffer (step 3's first two terms:
        they need no peer's key, so they are computed while step 1 waits)."""
        st.masked = wire.masked_buffer(st.round, self.index, x.size, st.quantizer.dtype)

        def encode(start: int, stop: int, chunk: np.ndarray) -> None:
            st.quantizer.encode(x[start:stop], out=chunk, checked=True)  # checked in submit

        P.apply_masks(wire.body(st.masked), [(st.seed, +1)], fill=encode)

    def _masks(self, st: _RoundState, peers: list[int], sign: int) -> list[tuple[bytes, int]]:
        """``sign`` × the masks shared with ``peers``, as apply_masks takes them."""
        masks = []
        for v in peers:
            key = self._agree(st.s_key, st.keys[v][1], "s", st.round, v)
            masks.append((key, sign if self.index < v else -sign))
        return masks

    def _masked_input(self, st: _RoundState, x: np.ndarray) -> Submission | None:
        msg = self._await(st.round, wire.Kind.FORWARD)
        if isinstance(msg, Submission):
            return msg
        forwarded = self._parse(
            lambda b: wire.parse_entries(b, size=wire.SEALED_BYTES), msg.body, "FORWARD"
        )
        if not set(forwarded) <= set(st.keys) - {self.index}:
            raise self._abort(st.round, "the server forwarded shares from clients without keys")
        for u, blob in forwarded.items():
            try:
                st.inbox[u] = P.open_sealed(
                    st.pair_keys[u], blob, share_ad(st.round, u, self.index)
                )
            except P.OpenFailed:
                raise self._abort(
                    st.round, f"the share bundle of client {u} does not open"
                ) from None
        self._require(st.round, len(st.inbox), "clients that shared their keys")
        body = wire.body(st.masked)
        silent = [v for v in st.keys if v not in st.inbox]  # they left before sharing: unmask them
        if silent:
            P.apply_masks(body, self._masks(st, silent, -1))
        self._send_masked(st.masked)
        return None

    def _send_masked(self, message: np.ndarray) -> None:
        """Send the masked-input message (its header and the masked vector)."""
        self.s.channel.send(self.config.server, UP, message)

    def _unmask(self, st: _RoundState, x: np.ndarray) -> Submission | None:
        msg = self._await(st.round, wire.Kind.SURVIVORS)
        if isinstance(msg, Submission):
            return msg
        survivors, dropped = self._parse(wire.parse_indices, msg.body, "SURVIVORS")
        if (set(survivors) & set(dropped)) or set(survivors) | set(dropped) != set(st.inbox):
            raise self._abort(st.round, "the server's survivor list does not match the round")
        if self.index not in survivors:
            raise self._abort(st.round, "the server lists this client as dropped after all")
        self._require(st.round, len(survivors), "survivors")
        shares: dict[int, bytes] = {}
        for v in survivors:  # the seed share of a survivor, never its key share
            shares[v] = st.inbox[v][P.SHARE_BYTES :]
        for v in dropped:  # the key share of a dropped client, never its seed share
            shares[v] = st.inbox[v][: P.SHARE_BYTES]
        self._send(wire.Kind.UNMASK, st.round, wire.entries_body(shares))
        return None

    # -- helpers ---------------------------------------------------------------------
    def _abstain(self, round_id: int, reason: str) -> Submission:
        log.warning("client %s abstains from round %d: %s", self.s.party, round_id, reason)
        self._send(wire.Kind.ABSTAIN, round_id, wire.text_body(reason))
        return Submission(round_id, False, reason)

    def _send(self, kind: wire.Kind, round_id: int, body: bytes) -> None:
        self.s.channel.send(self.config.server, UP, wire.encode(kind, self.index, round_id, body))

    def _await(self, round_id: int, kind: wire.Kind) -> wire.Message | Submission:
        """The server's next message of ``kind`` for ``round_id``, or the round's end."""
        timeout = self.s.channel.timeout + 4 * self.config.stage_timeout
        while True:
            raw = self.s.channel.recv(self.config.server, DOWN, timeout=timeout)
            msg = self._parse(wire.decode, raw, kind.name)
            if msg.round < round_id:
                continue  # the end of an earlier round this client left
            if msg.round != round_id:
                raise self._abort(round_id, f"the server sent round {msg.round}")
            if msg.kind == wire.Kind.ABORT:
                reason = wire.parse_text(msg.body)
                log.warning("client %s left round %d: %s", self.s.party, round_id, reason)
                return Submission(round_id, False, reason)
            if msg.kind != kind:
                raise self._abort(round_id, f"the server sent {msg.kind.name}, not {kind.name}")
            return msg

    def _parse(self, fn: Callable[[Any], T], raw: Any, what: str) -> T:
        try:
            return fn(raw)
        except wire.Malformed as exc:
            raise ProtocolAbort(
                f"malformed {what} message from the server: {exc}",
                party=self.s.party,
                step="secure aggregation",
            ) from None

    def _require(self, round_id: int, have: int, what: str) -> None:
        if have < self.config.threshold:
            raise self._abort(
                round_id, f"only {have} {what}, fewer than the threshold {self.config.threshold}"
            )

    def _agree(
        self, own: X25519PrivateKey, public: bytes, purpose: str, round_id: int, other: int
    ) -> bytes:
        try:
            return P.agree(own, public, P.pair_label(purpose, round_id, self.index, other))
        except ValueError:
            raise self._abort(round_id, f"client {other}'s public key is invalid") from None

    def _abort(self, round_id: int, reason: str) -> ProtocolAbort:
        return ProtocolAbort(
            f"secure aggregation round {round_id}: {reason}",
            party=self.s.party,
            step="secure aggregation",
            remedy="check that the server and every client run the same sharedml version",
        )

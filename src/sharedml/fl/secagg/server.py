"""The server role of secure aggregation: it learns the sum of the survivors' updates only.

See :mod:`sharedml.fl.secagg` for the protocol, what it reveals and the
threat model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sharedml.crypto import shamir
from sharedml.errors import ChannelError, ProtocolAbort
from sharedml.fl.quantize import Quantizer
from sharedml.fl.secagg import primitives as P
from sharedml.fl.secagg import wire
from sharedml.fl.secagg.collect import MASKED, Collector, History, Rejected
from sharedml.fl.secagg.config import DOWN, SecAggConfig
from sharedml.fl.secagg.graph import connected, neighbours
from sharedml.session import Session

log = logging.getLogger("sharedml.fl.secagg")
T = TypeVar("T")


class RoundAborted(ProtocolAbort):
    """A round could not finish; :attr:`missing` names who was out, and why."""

    def __init__(self, round_id: int, stage: str, why: str, missing: dict[str, str]) -> None:
        who = "; ".join(f"{c}: {r}" for c, r in missing.items()) or "none"
        super().__init__(
            f"secure aggregation round {round_id} aborted at {stage}: {why} (out: {who})",
            step=f"secure aggregation round {round_id}",
            remedy="bring the missing clients back, or tolerate more dropouts (a lower "
            "threshold) in the job",
        )
        self.round = round_id
        self.missing = missing


@dataclass(frozen=True)
class RoundResult:
    """What the server learns from one round: the sum, and who is in it."""

    round: int
    total: np.ndarray
    survivors: tuple[str, ...]
    out: dict[str, str] = field(default_factory=dict)
    error_bound: float = 0.0


class SecAggServer:
    """The aggregator's side of every round of one job."""

    def __init__(self, session: Session, config: SecAggConfig) -> None:
        if session.party != config.server:
            raise ProtocolAbort(f"{session.party!r} is not this aggregation's server")
        self.s = session
        self.config = config
        self.quantizer = config.quantizer
        self.collector = Collector(session.channel, config, History())
        self._recombiners: dict[tuple[int, ...], shamir.Recombiner] = {}

    def aggregate(
        self,
        round_id: int,
        participants: list[str],
        length: int,
        quantizer: Quantizer | None = None,
    ) -> RoundResult:
        """Run round ``round_id`` with ``participants`` on vectors of ``length`` floats,
        encoded by ``quantizer`` (default: the config's; the clients must use the same).

        Raises :class:`RoundAborted` (after telling the clients still in the
        round) when fewer than the threshold remain at any stage.
        """
        out: dict[int, str] = {}
        live = [self.config.index(c) for c in participants]
        keys = self._stage(round_id, live, "ADVERTISE", self._parse_advertise, out)
        graph = neighbours(round_id, keys, self.config.neighbours)
        for u in keys:
            mine = {v: keys[v] for v in graph[u] | {u}}
            self._send(round_id, u, wire.Kind.KEYS, wire.keys_body(mine), out)
        u1 = [u for u in keys if u not in out]
        shares = self._stage(round_id, u1, "SHARES", self._share_parser(graph), out)
        u2 = [u for u in shares if u not in out]
        for v in u2:
            forward = {u: shares[u][v] for u in u2 if v in graph[u]}
            self._send(round_id, v, wire.Kind.FORWARD, wire.entries_body(forward), out)
        q = quantizer or self.quantizer
        acc = np.zeros(length, dtype=q.dtype)
        parse = self._masked_parser(length, acc)
        masked = self._stage(round_id, [u for u in u2 if u not in out], MASKED, parse, out)
        u3 = [u for u in masked if u not in out]
        dropped = [u for u in u2 if u not in masked]  # they shared keys: their masks are in
        self._require(round_id, "masked input", u3, out)
        self._check_unmaskable(round_id, "masked input", graph, u3, dropped, u3, out)
        for u in u3:
            near = graph[u] | {u}
            body = wire.indices_body(sorted(near & set(u3)), sorted(near & set(dropped)))
            self._send(round_id, u, wire.Kind.SURVIVORS, body, out)
        unmask = self._stage(round_id, u3, "UNMASK", self._unmask_parser(graph, u3, dropped), out)
        holders = [h for h in unmask if h not in out]
        self._check_unmaskable(round_id, "unmasking", graph, u3, dropped, holders, out)
        ring_sum = self._unmask(round_id, acc, keys, graph, u3, dropped, unmask, holders)
        total = q.decode(ring_sum)
        return RoundResult(
            round_id,
            total,
            tuple(self.config.clients[u] for u in u3),
            {self.config.clients[u]: r for u, r in sorted(out.items())},
            float(np.max(q.error_bound(len(u3), total), initial=0.0)),
        )

    # -- stages ----------------------------------------------------------------------
    def _stage(
        self,
        round_id: int,
        clients: list[int],
        kind: str,
        parse: Callable[[int, object], Any],
        out: dict[int, str],
    ) -> dict[int, Any]:
        before = set(out)
        wait = self.config.input_timeout if kind == "ADVERTISE" else None  # inputs take time
        got = self.collector.stage(round_id, clients, parse, kind, out, wait)
        for index in sorted(set(out) - before):  # tell each client it is out, if it listens
            self._send(round_id, index, wire.Kind.ABORT, wire.text_body(out[index]), {})
        self._require(round_id, kind, [u for u in got if u not in out], out)
        return got

    def _parse_advertise(self, index: int, raw: object) -> tuple[bytes, bytes]:
        return _parsed(lambda: wire.parse_advertise(wire.decode(raw).body))

    def _share_parser(
        self, graph: dict[int, set[int]]
    ) -> Callable[[int, object], dict[int, bytes]]:
        def parse(index: int, raw: object) -> dict[int, bytes]:
            entries = _parsed(
                lambda: wire.parse_entries(wire.decode(raw).body, size=wire.SEALED_BYTES)
            )
            if set(entries) != graph[index]:
                raise Rejected("its share bundles are not addressed to exactly its neighbours")
            return entries

        return parse

    def _masked_parser(self, length: int, acc: np.ndarray) -> Callable[[int, object], bool]:
        def parse(index: int, raw: object) -> bool:
            masked = _parsed(lambda: wire.parse_masked(raw, length, acc.dtype.type))
            self.collector.history.check_fresh_vector(index, masked.vector)
            np.add(acc, masked.vector, out=acc)  # the sum grows as vectors arrive
            return True

        return parse

    def _unmask_parser(
        self, graph: dict[int, set[int]], u3: list[int], dropped: list[int]
    ) -> Callable[[int, object], dict[int, bytes]]:
        def parse(index: int, raw: object) -> dict[int, bytes]:
            want = (graph[index] | {index}) & (set(u3) | set(dropped))
            entries = _parsed(lambda: wire.parse_entries(wire.decode(raw).body, size=P.SHARE_BYTES))
            if set(entries) != want:
                raise Rejected("its unmasking shares do not match the survivor list")
            return entries

        return parse

    def _check_unmaskable(
        self,
        round_id: int,
        stage: str,
        graph: dict[int, set[int]],
        u3: list[int],
        dropped: list[int],
        holders: list[int],
        out: dict[int, str],
    ) -> None:
        """Abort unless the survivors hang together and every secret to recover has
        ``threshold`` holders left: only the whole sum may come out, never a part."""
        if not connected(u3, graph):
            self._abort(round_id, stage, out, "the survivors' masking graph fell apart", u3)
        t, have = self.config.threshold, set(holders)
        short = [u for u in u3 if len((graph[u] | {u}) & have) < t]
        short += [v for v in dropped if len(graph[v] & have) < t]
        if short:
            names = [self.config.clients[u] for u in short]
            why = f"fewer than {t} holders of the shares of {names} remain"
            self._abort(round_id, stage, out, why, u3)

    def _unmask(
        self,
        round_id: int,
        acc: np.ndarray,
        keys: dict[int, tuple[bytes, bytes]],
        graph: dict[int, set[int]],
        u3: list[int],
        dropped: list[int],
        unmask: dict[int, dict[int, bytes]],
        holders: list[int],
    ) -> np.ndarray:
        """Remove every survivor's self mask and the masks it shared with the dropped."""
        masks: list[tuple[bytes, int]] = []
        for u in u3:
            held = {h + 1: unmask[h][u] for h in holders if u == h or u in graph[h]}
            masks.append((self._recover(held, P.KEY_BYTES), -1))
        for v in dropped:
            held = {h + 1: unmask[h][v] for h in holders if v in graph[h]}
            secret = self._recover(held, P.PRIVATE_BYTES)
            if P.public_bytes(_private(secret)) != keys[v][1]:
                raise ProtocolAbort(
                    f"round {round_id}: the recovered mask key of dropped client "
                    f"{self.config.clients[v]!r} does not match its public key",
                    step="secure aggregation unmasking",
                    remedy="a client returned a wrong share; rerun the round",
                )
            for u in graph[v] & set(u3):
                key = P.agree(secret, keys[u][1], P.pair_label("s", round_id, u, v))
                masks.append((key, -1 if u < v else 1))
        return P.apply_masks(acc, masks)

    def _recover(self, shares: dict[int, bytes], size: int) -> bytes:
        """The secret behind ``shares`` (point -> share), from the first ``threshold``."""
        points = tuple(sorted(shares)[: self.config.threshold])
        rec = self._recombiners.get(points)
        if rec is None:
            rec = self._recombiners[points] = P.recoverer(points, self.config.threshold)
        return rec.recover(shares, size)

    # -- messages to clients ---------------------------------------------------------
    def _send(
        self, round_id: int, index: int, kind: wire.Kind, body: bytes, out: dict[int, str]
    ) -> None:
        try:
            self.s.channel.send(
                self.config.clients[index], DOWN, wire.encode(kind, 0, round_id, body)
            )
        except ChannelError as exc:
            reason = f"dropped: unreachable ({exc.message})"
            log.warning("round %d: client %s %s", round_id, self.config.clients[index], reason)
            out[index] = reason

    def _require(
        self, round_id: int, stage: str, remaining: list[int], out: dict[int, str]
    ) -> None:
        if len(remaining) < self.config.threshold:
            why = f"fewer than {self.config.threshold} clients remain"
            self._abort(round_id, stage, out, why, remaining)

    def _abort(
        self, round_id: int, stage: str, out: dict[int, str], why: str, tell: list[int]
    ) -> NoReturn:
        """End the round: tell the clients in ``tell`` why, raise :class:`RoundAborted`."""
        missing = {self.config.clients[u]: r for u, r in sorted(out.items())}
        reason = wire.text_body(f"round aborted at {stage}: {why}")
        for index in tell:
            if index not in out:
                self._send(round_id, index, wire.Kind.ABORT, reason, {})
        log.error("round %d aborted at %s (%s); out: %s", round_id, stage, why, missing)
        raise RoundAborted(round_id, stage, why, missing)


def _parsed(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except wire.Malformed as exc:
        raise Rejected(f"sent a malformed message ({exc})") from None


def _private(secret: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(secret)

"""How the server reads one stage of a round from its clients: deadlines, dropouts, exclusions.

Each client's messages arrive on one tag in the order sent. :class:`Collector`
reads, for one stage, one message from each client still in the round,
until the stage's deadline, and sorts the clients into those that answered
and those that are out, each with a reason a log and a result file can show:

* silent until the deadline, or disconnected → *dropped*;
* a message that does not parse, names another sender, the wrong kind or
  the wrong length → *excluded*;
* a round number ahead of the current one → excluded from this round
  ("announced round X": it has left it) and the message kept for round X;
* a message of this kind for a round whose message of this kind was
  already processed, or a masked vector whose bytes repeat an earlier one →
  excluded as a replay;
* a message left over from an earlier round that this client had left
  before the stage was read (it was slow) → discarded, and the next one read;
* an abstention → excluded with the client's own reason.

The server never sees anything of a client's update but its masked vector,
so "NaN in the update" or "outside the quantisation range" can only be found
by the client itself, which abstains (:mod:`~sharedml.fl.secagg.client`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sharedml.errors import ChannelError, PeerTimeout
from sharedml.fl.secagg import wire
from sharedml.fl.secagg.config import UP, SecAggConfig
from sharedml.transport.base import Channel

log = logging.getLogger("sharedml.fl.secagg")
#: Words of a masked vector hashed to recognise a replayed one (a prefix of
#: uniformly random words identifies the vector with overwhelming probability).
DIGEST_WORDS = 4096
MASKED = "MASKED"
#: Messages per client kept for a later round (a client that left one round early).
MAX_EARLY = 4


class Rejected(Exception):
    """A client's message is not acceptable; ``str()`` is the reason."""


@dataclass
class History:
    """What the server has processed from each client, across rounds (replay detection)."""

    last_round: dict[tuple[int, str], int] = field(default_factory=dict)
    digests: dict[int, set[bytes]] = field(default_factory=dict)

    def check_round(self, client: int, kind: str, announced: int, current: int) -> bool:
        """True to process, False to discard as left over; :class:`Rejected` otherwise."""
        last = self.last_round.get((client, kind), -1)
        if announced > current:
            raise Rejected(f"announced round {announced} during round {current}")
        if announced <= last:
            raise Rejected(f"replayed its {kind} message of round {announced}")
        return announced == current

    def processed(self, client: int, kind: str, round_id: int) -> None:
        self.last_round[(client, kind)] = round_id

    def check_fresh_vector(self, client: int, vector: np.ndarray) -> None:
        digest = hashlib.blake2b(vector[:DIGEST_WORDS].tobytes(), digest_size=16).digest()
        seen = self.digests.setdefault(client, set())
        if digest in seen:
            raise Rejected("replayed a masked vector of an earlier round under a new round number")
        seen.add(digest)


class Collector:
    """Reads one message per client per stage for the server of ``config``."""

    def __init__(self, channel: Channel, config: SecAggConfig, history: History) -> None:
        self.channel = channel
        self.config = config
        self.history = history
        #: per client, messages that arrived for a round not yet begun, in order
        self._early: dict[int, deque[object]] = {}

    def stage(
        self,
        round_id: int,
        clients: list[int],
        parse: Callable[[int, object], object],
        kind: str,
        out: dict[int, str],
        timeout: float | None = None,
    ) -> dict[int, object]:
        """``parse(client, raw)``'s result for each of ``clients`` that answered in
        ``timeout`` seconds (default: the stage timeout).

        ``parse`` raises :class:`Rejected` for an unacceptable message. The
        clients that are out are added to ``out`` (index → reason) and logged.
        """
        timeout = self.config.stage_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        got: dict[int, object] = {}
        for index in clients:
            try:
                got[index] = self._one(round_id, index, parse, kind, deadline)
            except Rejected as exc:
                self._out(round_id, index, f"excluded: {exc}", out)
            except PeerTimeout:
                self._out(
                    round_id,
                    index,
                    f"dropped: sent no {kind} message within {timeout:g} s",
                    out,
                )
            except ChannelError as exc:
                self._out(round_id, index, f"dropped: disconnected ({exc.message})", out)
        return got

    def _one(
        self,
        round_id: int,
        index: int,
        parse: Callable[[int, object], object],
        kind: str,
        deadline: float,
    ) -> object:
        client = self.config.clients[index]
        while True:
            early = self._early.get(index)
            if early:
                raw = early.popleft()
            else:
                wait = max(deadline - time.monotonic(), 1e-3)
                raw = self.channel.recv(client, UP, timeout=wait)
            announced, sender, msg_kind = _peek(raw)
            if sender != index:
                raise Rejected(f"its message claims to come from client {sender}")
            if announced > round_id:  # it has left this round; keep the message for its own
                self._keep_early(index, raw)
                raise Rejected(f"announced round {announced} during round {round_id}")
            if msg_kind == wire.Kind.ABSTAIN.name:
                reason = wire.parse_text(wire.decode(raw).body)
                if self.history.check_round(index, msg_kind, announced, round_id):
                    self.history.processed(index, msg_kind, round_id)
                    raise Rejected(f"abstained: {reason}")
                continue
            if not self.history.check_round(index, msg_kind, announced, round_id):
                log.info(
                    "round %d: discarded %s's late %s of round %d",
                    round_id,
                    client,
                    msg_kind,
                    announced,
                )
                continue
            if msg_kind != kind:
                raise Rejected(f"sent {msg_kind} where {kind} was due")
            self.history.processed(index, msg_kind, round_id)
            return parse(index, raw)

    def _keep_early(self, index: int, raw: object) -> None:
        queue = self._early.setdefault(index, deque())
        if len(queue) < MAX_EARLY:
            queue.append(raw)
        else:
            log.warning("dropped a message of client %s: too many ahead of their round", index)

    def _out(self, round_id: int, index: int, reason: str, out: dict[int, str]) -> None:
        log.warning("round %d: client %s %s", round_id, self.config.clients[index], reason)
        out[index] = reason


def _peek(raw: object) -> tuple[int, int, str]:
    """Round, sender and kind of a message, without trusting more of it."""
    try:
        if isinstance(raw, np.ndarray):
            words = wire.head(wire.check_masked(raw))
            return int(words[1]), int(words[2]), MASKED
        msg = wire.decode(raw)
        return msg.round, msg.sender, msg.kind.name
    except wire.Malformed as exc:
        raise Rejected(f"sent a malformed message ({exc})") from None

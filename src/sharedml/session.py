"""The per-party context every protocol receives: no module-level state.

A :class:`Session` says who this party is, who the job's peers are, which
:class:`~sharedml.transport.Channel` reaches them, where secret randomness
comes from and which fixed-point precision the job uses. Protocol code takes
it as an argument (STYLE.md 3) so the same code runs in threads, processes or
hosts.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sharedml.errors import ConfigError

if TYPE_CHECKING:
    from sharedml.transport.base import Channel

#: Default fractional bits of the fixed-point encoding on Z_2^64.
DEFAULT_FRAC_BITS = 16


@dataclass
class Session:
    """This party's view of one job.

    Attributes:
        party: this party's id (equal to its certificate subject).
        peers: every party in the job, this one included, in a fixed order that
            all parties agree on (it defines share indices).
        channel: how messages reach the other parties.
        frac_bits: fractional bits of fixed-point values on the ring.
        seed: 32 bytes of secret randomness for this party's PRGs; drawn from
            :mod:`secrets` unless given (tests pass one for reproducibility).
        extras: named objects the job wires in (e.g. a randomness provider).
    """

    party: str
    peers: tuple[str, ...]
    channel: Channel
    frac_bits: int = DEFAULT_FRAC_BITS
    seed: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.peers = tuple(self.peers)
        if self.party not in self.peers:
            raise ConfigError(
                f"party {self.party!r} is not among the job's peers {list(self.peers)}",
                remedy="list every party of the job, this one included, in 'peers'",
            )
        if len(set(self.peers)) != len(self.peers):
            raise ConfigError(f"duplicate party ids in peers {list(self.peers)}")
        if not 0 <= self.frac_bits <= 40:
            raise ConfigError(f"frac_bits must be in [0, 40], got {self.frac_bits}")
        if len(self.seed) < 16:
            raise ConfigError("session seed must hold at least 128 bits")

    @property
    def index(self) -> int:
        """This party's position in :attr:`peers` (its share index)."""
        return self.peers.index(self.party)

    @property
    def others(self) -> tuple[str, ...]:
        """Every peer but this party."""
        return tuple(p for p in self.peers if p != self.party)

    def rng(self, purpose: str) -> np.random.Generator:
        """A *non-secret* generator for simulation noise or shuffles, derived from
        the session seed and ``purpose``. Never use it for shares or masks:
        those come from :mod:`sharedml.crypto.prg`."""
        digest = hashlib.sha256(self.seed + purpose.encode()).digest()
        return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "little")))

"""The per-party context every protocol receives: no module-level state.

A :class:`Session` says who this party is, who the job's peers are, which
:class:`~sharedml.transport.Channel` reaches them, where secret randomness
comes from, which fixed-point precision the job uses and which peer, if any,
is the job's **dealer** (a helper that holds no data and deals correlated
randomness). Protocol code takes it as an argument (STYLE.md 3) so the same
code runs in threads, processes or hosts.

The MPC runtime comes from the session, and only from there: a protocol that
computes on secret shares calls :meth:`Session.mpc_runtime` with the provider
its caller asked for (``"dealer"``, ``"he"`` or ``None`` for the session's
default) and opens the returned :class:`MPCRuntime`::

    with session.mpc_runtime(provider, trunc="pair").open() as mpc:
        x = mpc.share(mine, owner=session.party)

The choice is made in one place: ``None`` means the dealer when the session
has one; ``"he"`` (Paillier-made randomness) needs exactly two data parties;
a missing dealer is a :class:`~sharedml.errors.ConfigError` raised before any
message is sent. The runtime runs over the data parties (every peer but the
dealer), with the dealer as their helper when it deals. Protocols that run
among the data parties only (PSI, a split, a secure sum) take
:meth:`Session.without_dealer`.

This is the seam new protocols build on (a federated learner's secure
aggregation, a secret-shared network, serving a shared model): take a
``Session``, ask it for the runtime, never build a randomness provider or
name the dealer yourself. Whoever starts the parties sets the dealer once —
``sharedml run`` and the node agents from the job's plan,
:func:`~sharedml.standalone.run_in_threads` and
:func:`~sharedml.standalone.run_in_processes` from their ``dealer=`` option.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from sharedml.errors import ConfigError
from sharedml.transport.base import Channel
from sharedml.transport.codec import Value

if TYPE_CHECKING:
    from sharedml.mpc.context import MPC
    from sharedml.scale.runtime import RayCompute

#: Default fractional bits of the fixed-point encoding on Z_2^64.
DEFAULT_FRAC_BITS = 16
#: Where an MPC runtime's correlated randomness comes from: the job's dealer, or
#: Paillier between two data parties (no third party; slower).
Provider = Literal["dealer", "he"]
PROVIDERS: tuple[Provider, ...] = ("dealer", "he")


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
        dealer: the peer that deals correlated randomness and holds no data, if
            the job has one (it may be this party: the dealer's own session).
        compute: where this party's heavy work runs: ``None`` in this process,
            or its own Ray cluster (:class:`~sharedml.scale.runtime.RayCompute`,
            from the node's ``compute:`` section); bucketed PSI and Paillier
            randomiser pools ask it. Never another party's.
    """

    party: str
    peers: tuple[str, ...]
    channel: Channel
    frac_bits: int = DEFAULT_FRAC_BITS
    seed: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    dealer: str | None = None
    compute: RayCompute | None = None

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
        if self.dealer is not None and self.dealer not in self.peers:
            raise ConfigError(
                f"the dealer {self.dealer!r} is not among the job's peers {list(self.peers)}",
                party=self.party, remedy="list the dealer among the peers, or give no dealer",
            )

    def local_rows(self, fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray, *,
                   axis: int = 0) -> np.ndarray:
        """``fn(X)`` for a function of this party's own rows alone (a model's local part
        of a score). On the party's Ray cluster (:attr:`compute`), ``shard_rows`` rows
        per task, when ``X`` has more rows than one shard (8.5-2); ``axis`` is where
        ``fn``'s output has the rows. The same array either way."""
        if self.compute is None or len(X) <= self.compute.config.shard_rows:
            return fn(X)
        return self.compute.rows(fn, X, axis=axis)

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

    @property
    def data_parties(self) -> tuple[str, ...]:
        """Every peer but the dealer, in :attr:`peers` order: the parties that hold data."""
        return tuple(p for p in self.peers if p != self.dealer)

    def among(self, peers: tuple[str, ...], *, frac_bits: int | None = None) -> Session:
        """This session restricted to ``peers`` (a subset of :attr:`peers`, this party
        among them): its channel reaches them only; the dealer is kept if listed."""
        if peers == self.peers and frac_bits in (None, self.frac_bits):
            return self
        channel = self.channel if peers == self.peers else _PeersOnly(self.channel, peers)
        return replace(
            self, peers=peers, channel=channel,
            frac_bits=self.frac_bits if frac_bits is None else frac_bits,
            dealer=self.dealer if self.dealer in peers else None,
        )

    def without_dealer(self, *, frac_bits: int | None = None) -> Session:
        """This session over the data parties only (for protocols the dealer takes no
        part in), at ``frac_bits`` if given."""
        return self.among(self.data_parties, frac_bits=frac_bits)

    def mpc_runtime(
        self,
        provider: Provider | None = None,
        *,
        frac_bits: int | None = None,
        trunc: str = "pair",
        purpose: str = "this computation",
        otherwise: str = "",
    ) -> MPCRuntime:
        """The job's MPC runtime over the data parties, chosen now and opened later.

        ``provider`` is ``"dealer"``, ``"he"`` or ``None`` (the dealer if the
        session has one). ``frac_bits`` overrides the session's precision for
        this runtime; ``trunc`` is :class:`~sharedml.mpc.MPC`'s truncation mode.
        Raises :class:`~sharedml.errors.ConfigError` (naming ``purpose``, with
        ``otherwise`` as a last remedy) when no provider can serve: no dealer,
        or ``"he"`` between other than two data parties. Nothing is sent here.
        """
        chosen = provider or ("dealer" if self.dealer is not None else None)
        if chosen is None or (chosen == "dealer" and self.dealer is None):
            raise ConfigError(
                f"{purpose} computes on secret shares and needs a dealer, and this job has none",
                party=self.party,
                remedy="set 'provider: dealer' on the step ('sharedml run' and the platform add a "
                "dealer for a step that names it), or 'provider: he' (two parties, slower)" + otherwise,
            )
        if chosen not in PROVIDERS:
            raise ConfigError(f"provider must be one of {PROVIDERS}, got {chosen!r}",
                              party=self.party)
        data = self.data_parties
        if chosen == "he" and len(data) != 2:
            raise ConfigError(
                f"provider 'he' works between two parties, this job has {len(data)}",
                party=self.party, remedy="use the dealer (the default)",
            )
        peers = (*data, self.dealer) if chosen == "dealer" and self.dealer else data
        return MPCRuntime(self.among(tuple(peers), frac_bits=frac_bits), chosen, trunc)


@dataclass(frozen=True)
class MPCRuntime:
    """A job's MPC runtime, chosen but not opened: see :meth:`Session.mpc_runtime`.

    ``session`` is over the data parties (and the dealer when ``provider`` is
    ``"dealer"``). :meth:`open` runs the runtime's handshake (one round among
    the data parties), so every data party must open it at the same point.
    """

    session: Session
    provider: Provider
    trunc: str = "pair"

    @property
    def parties(self) -> tuple[str, ...]:
        """The computing parties, in share order."""
        return self.session.data_parties

    def open(self) -> MPC:
        """A fresh :class:`~sharedml.mpc.MPC` with this provider's randomness;
        close it (``with``) to release the provider (a dealer stops serving it)."""
        from sharedml.mpc.context import MPC

        if self.provider == "dealer":
            from sharedml.mpc.dealer import DealerProvider

            return MPC(self.session, DealerProvider(self.session), trunc=self.trunc)
        from sharedml.mpc.he import HEProvider

        return MPC(self.session, HEProvider(self.session), trunc=self.trunc)


class _PeersOnly(Channel):
    """A view of a channel restricted to some of its peers."""

    def __init__(self, inner: Channel, peers: tuple[str, ...]) -> None:
        super().__init__(inner.party, peers, inner.job, inner.timeout)
        self._inner = inner

    def _send(self, to: str, tag: str, value: Value) -> None:
        self._inner._send(to, tag, value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        return self._inner._recv(frm, tag, timeout)

"""What every role of one secure-aggregation job agrees on before the first round."""

from __future__ import annotations

from dataclasses import dataclass

from sharedml.errors import ConfigError
from sharedml.fl.quantize import Quantizer

#: Tags of the two directions of every round (the round number is in each message).
UP = "secagg/up"
DOWN = "secagg/down"


@dataclass(frozen=True)
class SecAggConfig:
    """The job's aggregator, its clients and the round parameters.

    Attributes:
        server: the party that aggregates (the job's helper, or a data party named
            in the job).
        clients: every client that may take part, in an order all roles share
            (a client's position is its index; its Shamir point is index + 1).
            The server may be one of them (a data party that aggregates runs
            both roles, :mod:`sharedml.transport.loopback`): it then counts as
            one of the ``k − 1`` colluding clients the protocol tolerates.
        threshold: ``k``, the shares needed to recover a client's secrets and
            the fewest clients whose inputs a round may sum. A round with ``m``
            participants survives ``m − k`` dropouts; the server together with
            up to ``k − 1`` colluding clients learns nothing beyond the sum.
            At least 2 (a sum of one input is that input) and more than half
            the roster (Bonawitz et al. §4: so no two disjoint sets of
            survivors could each recover the secrets).
        bound: every coordinate of an update must lie in ``[-bound, bound]``
            (see :class:`~sharedml.fl.quantize.Quantizer`).
        stage_timeout: seconds the server waits for one stage's messages
            before it counts the silent clients as dropped.
        input_timeout: seconds it waits for a round's first message, which a
            client sends once its input is ready (local training included).
        neighbours: ``None`` (every client masks with every other: Bonawitz
            et al.), or an even degree: SecAgg+ (Bell et al.), each client
            shares keys and masks with that many neighbours
            (:mod:`~sharedml.fl.secagg.graph`); ``threshold`` is then counted
            within each neighbourhood (itself included) and must be a
            majority of it.
    """

    server: str
    clients: tuple[str, ...]
    threshold: int
    bound: float = float(2**20)
    stage_timeout: float = 30.0
    neighbours: int | None = None
    input_timeout: float = 600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "clients", tuple(self.clients))
        n = len(self.clients)
        if len(set(self.clients)) != n:
            raise ConfigError(f"secure aggregation needs distinct clients, got {list(self.clients)}")
        if n > 0xFFFF:
            raise ConfigError(f"{n} clients exceed the 65535 the wire format indexes")
        if self.neighbours is not None and (self.neighbours < 2 or self.neighbours % 2):
            raise ConfigError(f"neighbours must be an even number >= 2, got {self.neighbours}")
        group = n if self.neighbours is None else min(n, self.neighbours + 1)
        if not (2 <= self.threshold <= group and 2 * self.threshold > group):
            raise ConfigError(
                f"threshold {self.threshold} for groups of {group} clients must lie in "
                f"[{max(2, group // 2 + 1)}, {group}]",
                remedy="tolerate fewer dropouts (threshold = clients - dropouts)",
            )
        if self.stage_timeout <= 0 or self.input_timeout <= 0:
            raise ConfigError("stage_timeout and input_timeout must be positive")

    @classmethod
    def for_dropouts(
        cls,
        server: str,
        clients: tuple[str, ...] | list[str],
        max_dropouts: int,
        *,
        bound: float = float(2**20),
        stage_timeout: float = 30.0,
        input_timeout: float = 600.0,
    ) -> SecAggConfig:
        """The config that survives ``max_dropouts`` of all clients in every round."""
        return cls(
            server, tuple(clients), len(clients) - max_dropouts, bound, stage_timeout,
            input_timeout=input_timeout,
        )  # fmt: skip

    @property
    def quantizer(self) -> Quantizer:
        """The round's fixed-point encoding: on Z_2^32 when the bound leaves it 24
        fractional bits for every client's input, else Z_2^64 (:meth:`Quantizer.for_sum`)."""
        return Quantizer.for_sum(self.bound, max(len(self.clients), 1))

    def index(self, client: str) -> int:
        return self.clients.index(client)

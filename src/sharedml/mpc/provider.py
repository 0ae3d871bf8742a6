"""The correlated-randomness seam: where Beaver triples and friends come from.

Protocols ask a :class:`RandomnessProvider` for material by kind
(:mod:`sharedml.mpc.material`) through :meth:`~RandomnessProvider.request`,
which returns a :class:`Material` at once; free components are ready
immediately, derived ones may arrive later (a dealer's correction travels
while the parties open their masked values). Every party requests the same
kinds in the same order: protocols run in lock step.

Implementations: :class:`~sharedml.mpc.dealer.DealerProvider` (a third party
deals; must not collude with any provider) and
:class:`~sharedml.mpc.he.HEProvider` (two providers make the material
themselves with Paillier; no third party).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from sharedml.mpc.material import Kind

if TYPE_CHECKING:
    from sharedml.mpc.context import MPC


class Material:
    """This party's shares of one request's components, some possibly pending."""

    __slots__ = ("_on_release", "_pending", "_shares", "counter")

    def __init__(
        self,
        counter: int,
        shares: dict[str, np.ndarray],
        pending: Callable[[], dict[str, np.ndarray]] | None = None,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self.counter = counter
        self._shares = shares
        self._pending = pending
        self._on_release = on_release

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._shares and self._pending is not None:
            pending, self._pending = self._pending, None
            self._shares.update(pending())
        return self._shares[name]

    def release(self) -> None:
        """The protocol is done with these arrays: their buffers may be reused.

        Call it only when no array taken from this material is referenced any
        more; after it, the arrays must not be read.
        """
        if self._pending is not None:  # a reply still in flight must be consumed
            self._shares.update(self._pending())
            self._pending = None
        self._shares = {}
        if self._on_release is not None:
            release, self._on_release = self._on_release, None
            release()


class RandomnessProvider(ABC):
    """Source of correlated randomness for one party of one job."""

    #: Name used in the handshake; parties must agree on it.
    name: str = "provider"
    #: Peers that help but hold no shares (e.g. the dealer).
    helpers: tuple[str, ...] = ()
    #: Whether TRUNC material exists (one-round truncation); else two rounds.
    supports_pairs: bool = True
    #: Whether DABIT_MUL material exists (bit times value in one round).
    supports_bit_mul: bool = False
    #: Whether ``prefetch(plan)`` and ``recording()`` exist (see DealerProvider).
    supports_prefetch: bool = False
    #: Whether TRUNC_FIXED material exists (a truncation whose opening also
    #: gives a fixed operand's product, :meth:`FixedOperand.truncated_matmul_t`).
    supports_trunc_fixed: bool = False

    def __init__(self) -> None:
        self.requests = 0
        self.mpc: MPC | None = None

    def attach(self, mpc: MPC) -> None:
        """Bind to the runtime after its handshake; set up keys."""
        self.mpc = mpc

    @abstractmethod
    def request(
        self, kind: Kind, dims: tuple[int, ...], rows: np.ndarray | None = None
    ) -> Material:
        """Material of ``kind``; every party calls this in the same order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Tell helpers this party is done."""

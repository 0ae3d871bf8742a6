"""Client-level differential privacy for federated averaging: clip at the client, noise at the server.

Wrappers, not branches (STYLE.md 13): :class:`ClipUpdates` wraps a client's
secure-aggregation submitter, :class:`CentralGaussianNoise` wraps the
server's aggregator; the training loop does not know DP is on.

Mechanism (DP-FedAvg, McMahan et al., ICLR 2018, with fixed clipping):

1. Each client clips its update ``Δ_i`` (the model change of one round) to
   L2 norm ``C``: ``Δ_i · min(1, C / ‖Δ_i‖)``.
2. The clipped updates are summed by secure aggregation.
3. The server adds ``N(0, (σ C)^2 I)`` to the sum and divides by the number
   of clients chosen for the round (fixed before anyone's data is touched),
   so adding or removing one client changes the sum by at most ``C``: each
   round is the Gaussian mechanism with noise multiplier ``σ``.
4. ε for the job's δ comes from a maintained accountant —
   ``dp_accounting``'s Rényi-DP accountant over the composition of the
   rounds' Gaussian mechanisms (:func:`epsilon`), never a formula of ours.

Reveals: with DP on, what the server publishes (the model after each round)
is (ε, δ)-DP with respect to adding or removing one client's whole data set.
Not covered: the server itself sees the exact sum before it adds the noise
(central DP: it is trusted to add it; secure aggregation still hides each
client's own update from it); no amplification by client sampling is
claimed (ε is conservative); the validation metrics aggregated each round
are released exactly and are outside ε; floating-point Gaussian sampling
is subject to Mironov's (CCS 2012) precision attacks on the least
significant bits.

Noise comes from the project's AES-CTR PRG under a fresh key
(:func:`gaussian`, Box–Muller), never numpy's generator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sharedml.crypto.prg import Prg
from sharedml.errors import ConfigError
from sharedml.fl.secagg import RoundResult, Submission
from sharedml.fl.secagg.client import SecAggClient
from sharedml.fl.secagg.server import SecAggServer

DEFAULT_DELTA = 1e-5


@dataclass(frozen=True)
class DpConfig:
    """Clip norm ``C``, noise multiplier ``σ`` and the δ that ε is reported for."""

    clip: float
    noise_multiplier: float
    delta: float = DEFAULT_DELTA

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise ConfigError(f"dp.clip must be positive, got {self.clip}")
        if not self.noise_multiplier > 0:
            raise ConfigError(f"dp.noise_multiplier must be positive, got {self.noise_multiplier}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"dp.delta must lie in (0, 1), got {self.delta}")


def epsilon(noise_multipliers: list[float], delta: float) -> float:
    """ε after the rounds whose Gaussian noise multipliers are given, for ``delta``.

    The composition of one Gaussian mechanism per round, under add/remove-one
    neighbouring, accounted by ``dp_accounting``'s RDP accountant.
    """
    import dp_accounting
    from dp_accounting import rdp

    if not noise_multipliers:
        return 0.0
    accountant = rdp.RdpAccountant()
    for sigma in noise_multipliers:
        accountant.compose(dp_accounting.GaussianDpEvent(sigma))
    return float(accountant.get_epsilon(delta))


def clip_l2(update: np.ndarray, clip: float) -> np.ndarray:
    """``update`` scaled down to L2 norm ``clip`` if it is longer."""
    norm = float(np.linalg.norm(update))
    return update * (clip / norm) if norm > clip else update


def gaussian(prg: Prg, nonce: int, size: int) -> np.ndarray:
    """``size`` standard normal draws from the PRG stream ``nonce`` (Box–Muller)."""
    half = (size + 1) // 2
    words = prg.words(nonce, 2 * half)
    u = ((words >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53  # (0, 1]
    r = np.sqrt(-2.0 * np.log(u[:half]))
    theta = 2.0 * np.pi * u[half:]
    return np.concatenate([r * np.cos(theta), r * np.sin(theta)])[:size]


class ClipUpdates:
    """A client submitter whose updates are clipped to L2 norm ``clip`` first."""

    def __init__(self, inner: SecAggClient, clip: float) -> None:
        self.inner = inner
        self.clip = clip

    def submit(self, round_id: int, update: np.ndarray) -> Submission:
        update = np.asarray(update, dtype=np.float64)
        if np.isfinite(update).all():
            update = clip_l2(update, self.clip)
        return self.inner.submit(round_id, update)  # a NaN update abstains there


class CentralGaussianNoise:
    """A server aggregator that adds ``N(0, (σ C)^2)`` to every coordinate of each sum."""

    def __init__(self, inner: SecAggServer, config: DpConfig) -> None:
        self.inner = inner
        self.config = config
        self._prg = Prg.fresh()
        #: the noise multiplier of every round that released a sum (for the accountant)
        self.noise_multipliers: list[float] = []

    def aggregate(self, round_id: int, participants: list[str], length: int) -> RoundResult:
        res = self.inner.aggregate(round_id, participants, length)
        std = self.config.noise_multiplier * self.config.clip
        noise = std * gaussian(self._prg, round_id, length)
        self.noise_multipliers.append(self.config.noise_multiplier)
        return replace(res, total=res.total + noise)

    @property
    def epsilon(self) -> float:
        return epsilon(self.noise_multipliers, self.config.delta)

"""SecureBoost histograms on secret shares (``protocol="ss"``).

Protocol (label holder L, feature holders F_1..F_m, all computing parties;
additive shares on Z_2^64 from :mod:`sharedml.mpc`; correlated randomness from
a dealer D, or from Paillier between two parties):

1. Setup, once per training: each F_j builds its bin-indicator matrix
   ``B_j`` (n × its total bins less one per feature; row i has a one in the
   bin of each of its features, none when that is the feature's last bin:
   L derives each last bin as the node's total minus the other bins, since it
   knows the node's rows and gradients) and secret-shares it as integers; the parties mask it **once**
   (:class:`sharedml.mpc.FixedOperand`: ``B_j - A_j`` is opened a single time
   and reused by every product of every tree).
2. Per histogram request, L forms ``Y`` (n × 2k): for each requested node,
   the columns ``g·1[row in node]`` and ``h·1[row in node]`` (zero elsewhere,
   so unsampled rows and other nodes add nothing) in fixed point, and
   secret-shares it (a PRG seed per pair; only the shape travels).
3. For each F_j the parties compute ``[B_jᵀ Y]`` with one Beaver round on the
   fixed operand (fresh mask for ``Y``; no truncation: ``B_j`` is integral)
   and reveal it to L only.

Reveals: to L, the per-bin sums of g and h of every feature of every F_j for
each requested node (what it needs to pick splits) and the number of bins of
each F_j; to the F_j, the shapes (n, 2k) only — not which rows are sampled or
in which node, not gradients. Every opened value (``B_j - A_j``, ``Y - B``) is
masked by uniform randomness used once.

Security: semi-honest parties; with the dealer, D must not collude with any
computing party. Precision: g and h are encoded with ``scale`` fractional bits
(chosen so a sum over all rows fits the ring), so each bin sum is within
``count · 2^-(scale+1)`` of the exact sum.

On a party's Ray cluster (``Session.compute``, a node's ``compute: ray:``) its
local part of each product in step 3 runs over row shards on its workers
(:class:`sharedml.scale.histograms.ShardedProducts`): the same shares bit for
bit, so the same openings and the same revealed histograms; the workers are
the party's own and see only what it holds (``B_j - A_j``, its shares).

Cost: three products per tree of depth 3 (root, then each level's smaller
children, the larger ones by subtraction at L), each a pass over the n ×
(bins - features) masked matrix. Leaving out the last bins (73 -> 63 columns
on default_credit's host) took the CPU of 10 trees, summed over all
processes, from 16.0-17.2 s to 9.0-10.3 s (bench/vertical_secureboost.py
--protocols ss --trees 10, interleaved runs, same AUC).

Reference: the secret-shared histogram of SecretFlow's SS-XGB (Fang et al.,
"Large-scale secure XGB for vertical federated learning", CIKM 2021) with
SecureBoost's split selection at the label holder.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sharedml.crypto import ring
from sharedml.errors import ConfigError, ProtocolAbort
from sharedml.learn.tree.core import bin_offsets
from sharedml.learn.tree.histograms import HistogramClient, HistogramServer
from sharedml.session import Provider, Session
from sharedml.transport.base import Channel

MAX_SCALE = 32


def indicator(bins: np.ndarray, n_bins: np.ndarray) -> np.ndarray:
    """The one-hot bin matrix as ring integers, without each feature's last bin
    (n × Σ(n_bins - 1)): a row in a last bin has no one for that feature."""
    n = len(bins)
    kept = np.asarray(n_bins, dtype=np.int64) - 1
    out = np.zeros((n, int(kept.sum())), dtype=ring.DTYPE)
    inside = bins < kept[None, :]
    flat = bins + bin_offsets(kept)[None, :]
    rows = np.repeat(np.arange(n), bins.shape[1]).reshape(bins.shape)
    out[rows[inside], flat[inside]] = 1
    return out


def with_last_bins(sums: np.ndarray, n_bins: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Full histograms ``(k, Σ n_bins, 2)`` from sums without each feature's
    last bin ``(k, Σ(n_bins - 1), 2)``: the last bin is the node's total
    ``totals`` ``(k, 2)`` minus the feature's other bins."""
    k = sums.shape[0]
    out = np.empty((k, int(n_bins.sum()), 2))
    start = 0
    for f, nb in enumerate(np.asarray(n_bins, dtype=np.int64).tolist()):
        src = int(bin_offsets(np.asarray(n_bins) - 1)[f])
        part = sums[:, src : src + nb - 1]
        out[:, start : start + nb - 1] = part
        out[:, start + nb - 1] = totals - part.sum(axis=1)
        start += nb
    return out


def choose_scale(values: np.ndarray, n: int) -> int:
    """Fractional bits so ``n`` values of ``values``' magnitude sum within 2^62."""
    top = max(1.0, float(np.abs(values).max(initial=0.0)) * max(n, 1))
    return max(8, min(MAX_SCALE, 62 - math.ceil(math.log2(top + 1))))


class _SSParty:
    """What the label holder and the feature holders share: the runtime and
    the feature holders' masked indicator matrices, in the parties' order."""

    def __init__(
        self, session: Session, parties: list[str], label_holder: str, provider: Provider | None
    ) -> None:
        self.session, self.provider = session, provider
        self.lh = label_holder
        self.holders = [p for p in parties if p != label_holder]
        self.mpc: Any = None
        self.fixed: dict[str, Any] = {}

    def _start(self, own_matrix: np.ndarray | None) -> None:
        from sharedml.mpc import FixedOperand

        runtime = self.session.mpc_runtime(self.provider, purpose="SecureBoost (protocol 'ss')")
        self.mpc = runtime.open()
        if set(self.mpc.parties) != {self.lh, *self.holders}:
            raise ConfigError(
                f"MPC parties {list(self.mpc.parties)} differ from the SecureBoost parties "
                f"{[self.lh, *self.holders]}",
                party=self.session.party,
                remedy="give the session its dealer (Session(dealer=...)) so it is not taken for "
                "a data party",
            )
        compute = self.session.compute
        for p in self.holders:
            mine = own_matrix if p == self.session.party else None
            fixed = FixedOperand(self.mpc.share(mine, owner=p, encoded=True, scale=0))
            if compute is not None:  # this party's part of each product over row shards
                fixed.offload(compute.fixed_products(fixed.e, fixed.x.share))
            self.fixed[p] = fixed

    def _sums(self, y: Any) -> dict[str, np.ndarray]:
        """``B_jᵀ Y`` for every feature holder j, revealed to the label holder."""
        out = {}
        for p in self.holders:
            got = self.fixed[p].matmul(y, transpose=True, truncate=False).reveal(to=self.lh)
            if got is not None:
                out[p] = np.asarray(got, dtype=np.float64)
        return out

    def close(self) -> None:
        if self.mpc is not None:
            self.mpc.close()
            self.mpc = None


class SSHistogramClient(_SSParty, HistogramClient):
    """The label holder: shares the gradients, receives the revealed sums."""

    def setup(self, ch: Channel, holders: dict[str, np.ndarray], n_rows: int) -> None:
        self.nbins = holders
        self._start(None)

    def begin_tree(self, g: np.ndarray, h: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        self.g, self.h = g, h
        self.scale = choose_scale(np.concatenate([g[rows], h[rows]]), len(rows))
        node_of_row = np.full(len(g), -1, dtype=np.int64)
        node_of_row[rows] = 0
        return {p: v[0] for p, v in self.histograms(node_of_row, 1).items()}

    def histograms(self, node_of_row: np.ndarray, k: int) -> dict[str, np.ndarray]:
        y = np.zeros((len(self.g), 2 * k))
        at = np.flatnonzero(node_of_row >= 0)
        slots = node_of_row[at]
        y[at, 2 * slots] = self.g[at]
        y[at, 2 * slots + 1] = self.h[at]
        enc = np.rint(y * float(1 << self.scale)).astype(np.int64).view(ring.DTYPE)
        shared = self.mpc.share(enc, owner=self.lh, encoded=True, scale=self.scale)
        totals = np.stack(
            [
                np.bincount(slots, weights=self.g[at], minlength=k),
                np.bincount(slots, weights=self.h[at], minlength=k),
            ],
            axis=1,
        )
        out = {}
        for p, sums in self._sums(shared).items():
            nb = self.nbins[p]
            kept = int(nb.sum()) - len(nb)
            if sums.shape != (kept, 2 * k):
                raise ProtocolAbort(f"revealed histogram of shape {sums.shape}", party=p)
            out[p] = with_last_bins(sums.reshape(kept, k, 2).transpose(1, 0, 2), nb, totals)
        return out


class SSHistogramServer(_SSParty, HistogramServer):
    """A feature holder: contributes its masked indicator matrix and its shares."""

    def setup(self, ch: Channel, label_holder: str, bins: np.ndarray, n_bins: np.ndarray) -> None:
        self._start(indicator(bins, n_bins))

    def begin_tree(self) -> None:
        self.histograms(1)

    def histograms(self, k: int) -> None:
        y = self.mpc.share(None, owner=self.lh)
        if y.shape[1:] != (2 * k,):
            raise ProtocolAbort("shared gradient matrix of the wrong width", party=self.lh)
        self._sums(y)

"""Federated histogram gradient boosting: the split is chosen on securely summed histograms.

Roles: one server (the aggregator) and the clients, each holding the same
columns for its own rows. Every sum below is a round of
:mod:`sharedml.fl.secagg`; the server never sees one client's histogram.

Protocol:

1. *Bin edges.* Either declared in the job, or agreed by the secure quantile
   sketch of :mod:`sharedml.fl.sketch` (pooled moments, then a pooled fine
   histogram per feature on a grid the server sends back; ``n_bins − 1``
   cuts per feature).
2. *Base score.* The secure sum of ``[Σ y, n]`` gives the pooled mean label;
   the base margin is its logit (classification) or itself (regression),
   as XGBoost estimates its intercept. The server sends the edges and the
   base margin to every client; each bins its own rows.
3. *Trees, level by level.* Each client computes the gradient and hessian
   of the loss at its rows' current margins and, for every node of the
   level, the per-(feature, bin) sums of both over its rows in the node
   (:func:`sharedml.learn.tree.core.histogram`). The histograms of the
   level are summed securely; on the sum the server picks each node's best
   split by XGBoost's gain (:func:`~sharedml.learn.tree.core.best_split`:
   ``λ``, ``γ``, ``min_child_weight``) and sends the level's splits; clients
   route their rows. A node's weight ``−η G / (H + λ)`` comes from the sums
   of its parent's histogram. After ``max_depth`` levels (or when no node
   splits) the server sends the finished tree and everyone updates margins.

Reveals:
    server: the pooled sketch (per feature: mean, variance, histogram on
    the grid), the pooled label mean and row count, and for every node of
    every tree the pooled gradient and hessian sums per (feature, bin) —
    for the squared loss the hessian sums are row counts — never a client's
    own; clients: the edges and the trees (the model).
Security model: that of :mod:`sharedml.fl.secagg`. ARCHITECTURE §8 row
"federated histogram trees". Reference: Chen & Guestrin, "XGBoost", KDD
2016 (gain and weights); the histogram-aggregation design of horizontal
SecureBoost in FATE (Cheng et al., IEEE Intell. Syst. 2021).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from sharedml.errors import ChannelError, ConfigError, DataError
from sharedml.fl import sketch
from sharedml.fl.gbdt_model import GbdtModel, HTree
from sharedml.fl.secagg import SecAggClient, SecAggConfig, SecAggServer
from sharedml.learn.tree import core
from sharedml.learn.tree.binning import bin_index, bins_per_feature
from sharedml.session import Session

log = logging.getLogger("sharedml.fl.gbdt")
GRID, EDGES, LEVEL, TREE = "gbdt/grid", "gbdt/edges", "gbdt/level", "gbdt/tree"
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class GbdtParams:
    """Hyper-parameters every role agrees on (XGBoost's names and meanings)."""

    n_trees: int = 30
    max_depth: int = 3
    n_bins: int = 32
    learning_rate: float = 0.3
    reg_lambda: float = 1.0
    gamma: float = 0.0
    min_child_weight: float = 1.0
    task: str = "classification"
    sketch_cells: int = 1024

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}", remedy=f"use one of {TASKS}")
        if self.n_trees < 1 or not 1 <= self.max_depth <= 12 or not 2 <= self.n_bins <= 1024:
            raise ConfigError("n_trees >= 1, max_depth in [1, 12], n_bins in [2, 1024]")
        if self.learning_rate <= 0 or self.reg_lambda < 0 or self.min_child_weight < 0:
            raise ConfigError("learning_rate > 0, reg_lambda >= 0, min_child_weight >= 0")

    @property
    def split(self) -> core.SplitParams:
        return core.SplitParams(self.reg_lambda, self.gamma, self.min_child_weight)


class _Rounds:
    """Secure-aggregation round numbers, in the same order at every role."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next - 1


class GbdtServer:
    """The aggregator's side: agrees edges, sums histograms, chooses splits."""

    def __init__(self, session: Session, params: GbdtParams, secagg: SecAggConfig) -> None:
        self.s, self.p = session, params
        self.clients = list(secagg.clients)
        self.agg = SecAggServer(session, secagg)
        self.rounds = _Rounds()
        #: every secure sum that went without some client: its round and who, why
        self.excluded: list[dict[str, object]] = []

    def fit(self, n_features: int, edges: list[np.ndarray] | None = None) -> GbdtModel:
        if edges is None:
            edges = self._sketch(n_features)
        label = self._sum(2)
        base = _base_margin(self.p.task, label[0] / max(label[1], 1.0))
        self._send_all(EDGES, np.append(_pack_edges(edges), base))
        n_bins = bins_per_feature(edges)
        model = GbdtModel(self.p.task, base, edges)
        for _ in range(self.p.n_trees):
            tree = self._tree(n_bins, edges)
            self._send_all(TREE, tree.to_array())
            model.trees.append(tree)
        return model

    def _send_all(self, tag: str, value: np.ndarray) -> None:
        for c in self.clients:
            try:
                self.s.channel.send(c, tag, value)
            except ChannelError as exc:  # gone: the secure sums count it out from now on
                log.warning("cannot reach client %s: %s", c, exc.message)

    def _sum(self, length: int) -> np.ndarray:
        res = self.agg.aggregate(self.rounds.take(), self.clients, length)
        if res.out:
            self.excluded.append({"round": res.round, **res.out})
        return res.total

    def _sketch(self, n_features: int) -> list[np.ndarray]:
        cells = self.p.sketch_cells
        low, width = sketch.grid(self._sum(2 * n_features + 1), cells)
        self._send_all(GRID, np.concatenate([low, width]))
        counts = self._sum(n_features * (cells + 2))
        return sketch.edges_from_counts(counts, low, width, cells, self.p.n_bins)

    def _tree(self, n_bins: np.ndarray, edges: list[np.ndarray]) -> HTree:
        tree = HTree()
        total = int(n_bins.sum())
        active = [tree.add(0.0)]
        for depth in range(self.p.max_depth):
            hist = self._sum(len(active) * total * 2).reshape(len(active), total, 2)
            splits = np.full((len(active), 2), -1.0)
            children = []
            for k, node in enumerate(active):
                G, H = hist[k, : n_bins[0]].sum(axis=0)
                if node == 0:
                    tree.value[0] = self._weight(G, H)
                best = core.best_split(hist[k], n_bins, self.p.split)
                if best is None:
                    continue
                f, b = best.feature, best.bin
                offset = int(n_bins[:f].sum())
                GL, HL = hist[k, offset : offset + b + 1].sum(axis=0)
                left, right = tree.add(self._weight(GL, HL)), tree.add(self._weight(G - GL, H - HL))
                tree.feature[node], tree.bin[node] = f, b
                tree.threshold[node] = float(edges[f][b])
                tree.left[node], tree.right[node] = left, right
                splits[k] = (f, b)
                children += [left, right]
            self._send_all(LEVEL, splits)
            if not children or depth == self.p.max_depth - 1:
                break
            active = children
        return tree

    def _weight(self, G: float, H: float) -> float:
        return self.p.learning_rate * core.leaf_weight(G, H, self.p.reg_lambda)


class GbdtClient:
    """A data owner's side: bins its rows, sends histograms, follows the splits."""

    def __init__(self, session: Session, params: GbdtParams, secagg: SecAggConfig) -> None:
        self.s, self.p = session, params
        self.server = secagg.server
        self.agg = SecAggClient(session, secagg)
        self.rounds = _Rounds()

    def fit(self, X: np.ndarray, y: np.ndarray, declared: bool = False) -> GbdtModel:
        """Train with the others; ``declared`` when the job gave the server the edges."""
        X, y = sketch.check_features(X, self.s.party), np.asarray(y, dtype=np.float64)
        if y.shape != (X.shape[0],):
            raise DataError(f"{X.shape[0]} rows but {y.size} labels", party=self.s.party)
        if not declared:
            cells = self.p.sketch_cells
            self._sum(sketch.moment_sums(X))
            low, width = np.split(self._recv(GRID, 2 * X.shape[1]), 2)
            self._sum(sketch.cell_counts(X, low, width, cells))
        self._sum(np.array([y.sum(), y.size], dtype=np.float64))
        header = self._recv(EDGES)
        edges = _unpack_edges(header[:-1])
        bins, n_bins = bin_index(X, edges), bins_per_feature(edges)
        model = GbdtModel(self.p.task, float(header[-1]), edges)
        margin = np.full(len(y), model.base_margin)
        grad_hess = (
            core.logistic_grad_hess if self.p.task == "classification" else core.squared_grad_hess
        )
        for _ in range(self.p.n_trees):
            g, h = grad_hess(y, margin)
            self._grow(bins, n_bins, g, h)
            tree = HTree.from_array(self._recv(TREE))
            model.trees.append(tree)
            margin += tree.predict(X)
        return model

    def _sum(self, vector: np.ndarray) -> None:
        """Submit ``vector`` to the next secure sum (only the server learns the total)."""
        self.agg.submit(self.rounds.take(), np.asarray(vector, dtype=np.float64))

    def _recv(self, tag: str, size: int | None = None) -> np.ndarray:
        value = self.s.channel.recv(self.server, tag)
        if not isinstance(value, np.ndarray) or value.dtype != np.float64:
            raise DataError(f"malformed {tag} from the server", party=self.s.party)
        if size is not None and value.size != size:
            raise DataError(f"{tag} holds {value.size} values, expected {size}", party=self.s.party)
        return value

    def _grow(self, bins: np.ndarray, n_bins: np.ndarray, g: np.ndarray, h: np.ndarray) -> None:
        """Send each level's histograms and route rows by the server's splits."""
        offsets = core.bin_offsets(n_bins)
        total = int(n_bins.sum())
        node_rows = [np.arange(len(g))]
        for depth in range(self.p.max_depth):
            hist = np.stack(
                [core.histogram(bins[rows], offsets, total, g[rows], h[rows]) for rows in node_rows]
            )
            self._sum(hist.ravel())
            splits = self._recv(LEVEL).reshape(-1, 2)
            children = []
            for rows, (f, b) in zip(node_rows, splits, strict=True):
                if f >= 0:
                    go_left = bins[rows, int(f)] <= b
                    children += [rows[go_left], rows[~go_left]]
            if not children or depth == self.p.max_depth - 1:
                return
            node_rows = children


def _base_margin(task: str, mean: float) -> float:
    if task == "regression":
        return float(mean)
    p = min(max(mean, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def _pack_edges(edges: list[np.ndarray]) -> np.ndarray:
    """``[F, len_1 .. len_F, cuts...]`` as one float64 array."""
    return np.concatenate([[len(edges)], [len(e) for e in edges], *edges]).astype(np.float64)


def _unpack_edges(arr: np.ndarray) -> list[np.ndarray]:
    F = int(arr[0])
    lens = arr[1 : 1 + F].astype(np.int64)
    if arr.size != 1 + F + lens.sum():
        raise DataError("malformed bin edges from the server")
    starts = np.concatenate([[1 + F], 1 + F + np.cumsum(lens)[:-1]]).astype(np.int64)
    return [arr[s : s + n].copy() for s, n in zip(starts, lens, strict=True)]

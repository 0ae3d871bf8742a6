"""The label holder's role in SecureBoost: it drives training and prediction.

Per tree it computes gradients and hessians from its labels, has the feature
holders' per-bin sums delivered through a
:class:`~sharedml.learn.tree.histograms.HistogramClient`, computes its own
histograms in the clear, picks each node's best split over every party's
features, and asks the split's owner for the record id and the side each of
the node's rows goes to. Trees hold ``(owner, record id)`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sharedml.errors import ProtocolAbort
from sharedml.learn.tree.binning import bin_index, bins_per_feature, quantile_edges
from sharedml.learn.tree.core import (
    SplitCandidate,
    SplitParams,
    best_split,
    bin_offsets,
    histogram,
    leaf_weight,
)
from sharedml.learn.tree.histograms import HistogramClient
from sharedml.learn.tree.model import SplitTable, Tree
from sharedml.learn.tree.wire import (
    OP_BEGIN_TREE,
    OP_DIRECTIONS,
    OP_END,
    OP_HISTOGRAMS,
    OP_SPLIT,
    send_cmd,
    unpack_bits,
)
from sharedml.transport.base import Channel

Loss = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class BoostConfig:
    n_estimators: int
    max_depth: int
    learning_rate: float
    split: SplitParams
    n_bins: int
    subsample: float
    colsample_bytree: float
    early_stopping_rounds: int | None


@dataclass
class _Node:
    id: int
    rows: np.ndarray
    hists: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class BoostResult:
    trees: list[Tree]
    table: SplitTable
    best_iteration: int
    val_scores: list[float]


class LabelHolderTrainer:
    """Builds the trees; ``holders`` are the feature holders' party ids."""

    def __init__(
        self,
        ch: Channel,
        me: str,
        holders: list[str],
        client: HistogramClient,
        config: BoostConfig,
        loss: Loss,
        rng: np.random.Generator,
    ) -> None:
        self.ch, self.me, self.holders = ch, me, holders
        self.client, self.cfg, self.loss, self.rng = client, config, loss, rng
        self.table = SplitTable()

    # -- setup ---------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        base: float,
        val: tuple[np.ndarray, np.ndarray, Metric] | None,
    ) -> BoostResult:
        self.edges = quantile_edges(X, self.cfg.n_bins)
        self.bins = bin_index(X, self.edges)
        self.nbins = {self.me: bins_per_feature(self.edges)}
        for p in self.holders:
            nb = np.asarray(self.ch.recv(p, "meta"), dtype=np.int64)
            if nb.ndim != 1 or (nb.size and nb.min() < 1):
                raise ProtocolAbort("malformed feature-holder metadata", party=p, step="meta")
            self.nbins[p] = nb
        self.client.setup(self.ch, {p: self.nbins[p] for p in self.holders}, len(y))
        self.client.expect_trees(self.cfg.n_estimators)
        n = len(y)
        margin = np.full(n, base)
        val_margin = np.full(len(val[0]), base) if val is not None else None
        trees: list[Tree] = []
        scores: list[float] = []
        best = -1
        for t in range(self.cfg.n_estimators):
            g, h = self.loss(y, margin)
            tree, leaf_of_row, rows = self._grow(g, h)
            trees.append(tree)
            margin += self._apply(tree, leaf_of_row, rows, n, dataset=0, X=X)
            if val is not None and val_margin is not None:
                Xv, yv, metric = val
                val_margin += self._apply(tree, None, None, len(Xv), dataset=1, X=Xv)
                scores.append(metric(yv, val_margin))
                if best < 0 or scores[-1] < scores[best]:
                    best = t
                rounds = self.cfg.early_stopping_rounds
                if rounds is not None and t - best >= rounds:
                    break
        if val is None or self.cfg.early_stopping_rounds is None:
            best = len(trees) - 1
        trees = trees[: best + 1]
        for p in self.holders:
            send_cmd(self.ch, p, OP_END, kept_records(trees, p))
        keep = kept_records(trees, self.me)
        table = SplitTable(self.table.features[:keep], self.table.thresholds[:keep])
        self.client.close()
        return BoostResult(trees, table, best, scores)

    # -- one tree ------------------------------------------------------------------
    def _grow(self, g: np.ndarray, h: np.ndarray) -> tuple[Tree, np.ndarray, np.ndarray]:
        n = len(g)
        rows = self._sample_rows(n)
        masks = self._feature_masks()
        for p in self.holders:
            send_cmd(self.ch, p, OP_BEGIN_TREE)
        hists = self.client.begin_tree(g, h, rows)
        hists[self.me] = self._own_hist(rows, g, h)
        tree = Tree()
        level = [_Node(tree.add_node(), rows, hists)]
        leaf_of_row = np.full(n, -1, dtype=np.int64)
        for depth in range(self.cfg.max_depth + 1):
            choices = {}
            for node in level:
                cand = self._choose(node, g, h, masks) if depth < self.cfg.max_depth else None
                if cand is None:
                    G, H = g[node.rows].sum(), h[node.rows].sum()
                    tree.value[node.id] = self.cfg.learning_rate * leaf_weight(
                        G, H, self.cfg.split.reg_lambda
                    )
                    leaf_of_row[node.rows] = node.id
                else:
                    choices[node.id] = cand
            if not choices:
                break
            level = self._split_level(tree, level, choices, g, h, depth + 1 < self.cfg.max_depth)
        return tree, leaf_of_row, rows

    def _sample_rows(self, n: int) -> np.ndarray:
        if self.cfg.subsample >= 1.0:
            return np.arange(n)
        k = max(2, round(self.cfg.subsample * n))
        return np.sort(self.rng.choice(n, size=k, replace=False))

    def _feature_masks(self) -> dict[str, np.ndarray]:
        masks = {p: np.ones(len(nb), dtype=bool) for p, nb in self.nbins.items()}
        if self.cfg.colsample_bytree >= 1.0:
            return masks
        total = sum(len(m) for m in masks.values())
        k = max(1, round(self.cfg.colsample_bytree * total))
        chosen = np.zeros(total, dtype=bool)
        chosen[self.rng.choice(total, size=k, replace=False)] = True
        start = 0
        for p in masks:
            masks[p] = chosen[start : start + len(masks[p])]
            start += len(masks[p])
        return masks

    def _own_hist(self, rows: np.ndarray, g: np.ndarray, h: np.ndarray) -> np.ndarray:
        nb = self.nbins[self.me]
        return histogram(self.bins[rows], bin_offsets(nb), int(nb.sum()), g[rows], h[rows])

    def _choose(
        self, node: _Node, g: np.ndarray, h: np.ndarray, masks: dict[str, np.ndarray]
    ) -> tuple[str, SplitCandidate] | None:
        best: tuple[str, SplitCandidate] | None = None
        for p in [self.me, *self.holders]:
            cand = best_split(node.hists[p], self.nbins[p], self.cfg.split, masks[p])
            if cand is not None and (best is None or cand.gain > best[1].gain):
                best = (p, cand)
        return best

    def _split_level(
        self,
        tree: Tree,
        level: list[_Node],
        choices: dict[int, tuple[str, SplitCandidate]],
        g: np.ndarray,
        h: np.ndarray,
        need_hists: bool,
    ) -> list[_Node]:
        """Have every chosen split recorded by its owner; return the children."""
        left = np.zeros(len(g), dtype=bool)
        by_owner: dict[str, list[_Node]] = {}
        for node in level:
            if node.id in choices:
                by_owner.setdefault(choices[node.id][0], []).append(node)
        for owner, nodes in by_owner.items():
            splits = [choices[node.id][1] for node in nodes]
            if owner == self.me:
                ids = self._record_own(nodes, splits, left)
            else:
                ids = self._record_remote(owner, nodes, splits, left).tolist()
            for node, rid in zip(nodes, ids, strict=True):
                tree.record[node.id], tree.owner[node.id] = int(rid), owner
        children: list[_Node] = []
        smaller: list[tuple[_Node, _Node, _Node]] = []  # (parent, small, large)
        for node in level:
            if node.id not in choices:
                continue
            lid, rid = tree.add_node(), tree.add_node()
            tree.left[node.id], tree.right[node.id] = lid, rid
            go = left[node.rows]
            lnode, rnode = _Node(lid, node.rows[go]), _Node(rid, node.rows[~go])
            children += [lnode, rnode]
            small, large = (lnode, rnode) if len(lnode.rows) <= len(rnode.rows) else (rnode, lnode)
            smaller.append((node, small, large))
        if need_hists:
            self._child_hists(smaller, g, h)
        return children

    def _record_own(
        self, nodes: list[_Node], splits: list[SplitCandidate], left: np.ndarray
    ) -> list[int]:
        ids = []
        for node, cand in zip(nodes, splits, strict=True):
            ids.append(self.table.add(cand.feature, float(self.edges[cand.feature][cand.bin])))
            left[node.rows] = self.bins[node.rows, cand.feature] <= cand.bin
        return ids

    def _record_remote(
        self, owner: str, nodes: list[_Node], splits: list[SplitCandidate], left: np.ndarray
    ) -> np.ndarray:
        """The owner records each split and says which side each of the node's rows goes."""
        node_of_row = np.full(len(left), -1, dtype=np.int32)
        for slot, node in enumerate(nodes):
            node_of_row[node.rows] = slot
        which = np.array([(c.feature, c.bin) for c in splits], dtype=np.int64)
        send_cmd(self.ch, owner, OP_SPLIT, len(nodes))
        self.ch.send(owner, "rows", node_of_row)
        self.ch.send(owner, "which", which)
        ids = np.asarray(self.ch.recv(owner, "ids"), dtype=np.int64)
        if ids.shape != (len(nodes),):
            raise ProtocolAbort("split record ids of the wrong shape", party=owner)
        sel = np.flatnonzero(node_of_row >= 0)
        left[sel] = unpack_bits(self.ch.recv(owner, "dirs"), len(sel), owner, "dirs")
        return ids

    def _child_hists(
        self, triples: list[tuple[_Node, _Node, _Node]], g: np.ndarray, h: np.ndarray
    ) -> None:
        node_of_row = np.full(len(g), -1, dtype=np.int32)
        for slot, (_, small, _) in enumerate(triples):
            node_of_row[small.rows] = slot
        for p in self.holders:
            send_cmd(self.ch, p, OP_HISTOGRAMS, len(triples))
        remote = self.client.histograms(node_of_row, len(triples))
        for slot, (parent, small, large) in enumerate(triples):
            small.hists = {p: remote[p][slot] for p in self.holders}
            small.hists[self.me] = self._own_hist(small.rows, g, h)
            large.hists = {p: parent.hists[p] - small.hists[p] for p in parent.hists}

    # -- applying a finished tree ------------------------------------------------
    def _apply(
        self,
        tree: Tree,
        leaf_of_row: np.ndarray | None,
        rows: np.ndarray | None,
        n: int,
        dataset: int,
        X: np.ndarray,
    ) -> np.ndarray:
        """The tree's output on every row of the training (0) or validation (1) set."""
        if leaf_of_row is not None and rows is not None and len(rows) == n:
            return np.asarray(tree.value)[leaf_of_row]
        dirs = self.directions(tree, X, dataset)
        return tree.predict(n, dirs)

    def directions(
        self, tree: Tree, X: np.ndarray, dataset: int
    ) -> dict[tuple[str, int], np.ndarray]:
        """Each split's left-mask over all rows: own splits here, others asked of their owner."""
        out: dict[tuple[str, int], np.ndarray] = {}
        wanted: dict[str, list[int]] = {}
        for i in tree.splits():
            wanted.setdefault(tree.owner[i], []).append(tree.record[i])
        for p, ids in wanted.items():
            arr = np.asarray(ids, dtype=np.int64)
            if p == self.me:
                masks = self.table.directions(X, arr)
            else:
                send_cmd(self.ch, p, OP_DIRECTIONS, dataset)
                self.ch.send(p, "ids", arr)
                masks = unpack_bits(self.ch.recv(p, "dirs"), len(X), p, "dirs")
                if masks.shape[0] != len(arr):
                    raise ProtocolAbort("direction rows do not match the ids asked", party=p)
            for rid, m in zip(ids, masks, strict=True):
                out[(p, rid)] = m
        return out


def kept_records(trees: list[Tree], party: str) -> int:
    """How many of ``party``'s split records the kept trees use (records are
    created in tree order, so the kept ones are a prefix)."""
    used = [t.record[i] for t in trees for i in t.splits() if t.owner[i] == party]
    return max(used) + 1 if used else 0


__all__ = ["BoostConfig", "BoostResult", "LabelHolderTrainer"]

"""A horizontally trained boosted-tree model: every party holds all of it (pure numpy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sharedml.errors import DataError
from sharedml.learn.tree.core import sigmoid

LEAF = -1


@dataclass
class HTree:
    """One tree as parallel node arrays; node 0 is the root, children follow parents.

    A split sends a row left when ``x[feature] < threshold`` (bin ≤ ``bin``);
    ``value`` is the node's weight times the learning rate (used at leaves).
    """

    feature: list[int] = field(default_factory=list)
    bin: list[int] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)

    def add(self, value: float) -> int:
        for arr, v in ((self.feature, LEAF), (self.bin, -1), (self.left, LEAF), (self.right, LEAF)):
            arr.append(v)
        self.threshold.append(0.0)
        self.value.append(float(value))
        return len(self.value) - 1

    def predict(self, X: np.ndarray) -> np.ndarray:
        node = np.zeros(X.shape[0], dtype=np.int64)
        for i in range(len(self.value)):
            if self.left[i] == LEAF:
                continue
            at = node == i
            go_left = X[:, self.feature[i]] < self.threshold[i]
            node[at & go_left] = self.left[i]
            node[at & ~go_left] = self.right[i]
        return np.asarray(self.value)[node]

    def to_array(self) -> np.ndarray:
        """The tree as one float64 array, shape ``(6, nodes)`` (what the server sends)."""
        return np.array(
            [self.feature, self.bin, self.threshold, self.left, self.right, self.value],
            dtype=np.float64,
        )

    @classmethod
    def from_array(cls, arr: np.ndarray) -> HTree:
        if arr.ndim != 2 or arr.shape[0] != 6:
            raise DataError(f"a tree array has shape (6, nodes), got {arr.shape}")
        f, b, t, lft, rgt, v = arr
        tree = cls(
            [int(x) for x in f], [int(x) for x in b], [float(x) for x in t],
            [int(x) for x in lft], [int(x) for x in rgt], [float(x) for x in v],
        )  # fmt: skip
        n = len(tree.value)
        for i in range(n):
            lo, hi = tree.left[i], tree.right[i]
            if lo != LEAF and not (i < lo < n and i < hi < n):
                raise DataError(f"tree node {i} points at children out of order")
        return tree


@dataclass
class GbdtModel:
    """Base margin, the agreed bin edges and the trees."""

    task: str
    base_margin: float
    edges: list[np.ndarray] = field(default_factory=list)
    trees: list[HTree] = field(default_factory=list)

    def margin(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        out = np.full(X.shape[0], self.base_margin)
        for tree in self.trees:
            out += tree.predict(X)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values (regression)."""
        m = self.margin(X)
        return sigmoid(m) if self.task == "classification" else m

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "base_margin": self.base_margin,
            "edges": [e.tolist() for e in self.edges],
            "trees": [t.to_array().tolist() for t in self.trees],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GbdtModel:
        return cls(
            str(d["task"]),
            float(d["base_margin"]),
            [np.asarray(e, dtype=np.float64) for e in d["edges"]],
            [HTree.from_array(np.asarray(t, dtype=np.float64)) for t in d["trees"]],
        )

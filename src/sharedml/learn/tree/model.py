"""Each party's part of a SecureBoost model, and how paths are assembled.

The label holder keeps the trees: structure, leaf weights and, at each split,
only ``(owner party, record id)``. Each split owner keeps a :class:`SplitTable`
mapping its opaque record ids to ``(feature, threshold)``; thresholds never
leave it. Pure data and numpy — no I/O beyond (de)serialising to JSON-ready
dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from sharedml.errors import DataError

LEAF = -1


@dataclass
class SplitTable:
    """A split owner's lookup table: record id -> (feature index, threshold)."""

    features: list[int] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)

    def add(self, feature: int, threshold: float) -> int:
        self.features.append(int(feature))
        self.thresholds.append(float(threshold))
        return len(self.features) - 1

    def __len__(self) -> int:
        return len(self.features)

    def directions(self, X: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``True`` where a row goes left (``x < threshold``), shape ``(len(ids), n)``."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise DataError(f"split record id out of range (table has {len(self)} records)")
        feats = np.asarray(self.features, dtype=np.int64)[ids]
        thr = np.asarray(self.thresholds, dtype=np.float64)[ids]
        return (np.asarray(X, dtype=np.float64)[:, feats] < thr[None, :]).T

    def to_dict(self) -> dict[str, list]:
        return {"features": self.features, "thresholds": self.thresholds}

    @classmethod
    def from_dict(cls, d: Mapping[str, list]) -> SplitTable:
        return cls([int(f) for f in d["features"]], [float(t) for t in d["thresholds"]])


@dataclass
class Tree:
    """One tree as parallel node arrays; node 0 is the root.

    ``left[i] == LEAF`` marks a leaf with weight ``value[i]`` (learning rate
    included); otherwise ``(owner[i], record[i])`` names the split.
    """

    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    owner: list[str] = field(default_factory=list)
    record: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)

    def add_node(self) -> int:
        for arr, v in ((self.left, LEAF), (self.right, LEAF), (self.record, -1)):
            arr.append(v)
        self.owner.append("")
        self.value.append(0.0)
        return len(self.left) - 1

    def splits(self) -> list[int]:
        return [i for i, lft in enumerate(self.left) if lft != LEAF]

    def predict(self, n: int, directions: Mapping[tuple[str, int], np.ndarray]) -> np.ndarray:
        """Leaf value of each of ``n`` rows, given each split's left-mask over all rows."""
        node = np.zeros(n, dtype=np.int64)
        for i in range(len(self.left)):  # children always follow their parent
            if self.left[i] == LEAF:
                continue
            at = node == i
            go_left = directions[(self.owner[i], self.record[i])]
            node[at & go_left] = self.left[i]
            node[at & ~go_left] = self.right[i]
        return np.asarray(self.value, dtype=np.float64)[node]

    def to_dict(self) -> dict[str, list]:
        return {
            "left": self.left,
            "right": self.right,
            "owner": self.owner,
            "record": self.record,
            "value": self.value,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, list]) -> Tree:
        tree = cls(
            [int(v) for v in d["left"]],
            [int(v) for v in d["right"]],
            [str(v) for v in d["owner"]],
            [int(v) for v in d["record"]],
            [float(v) for v in d["value"]],
        )
        n = len(tree.left)
        if not all(len(a) == n for a in (tree.right, tree.owner, tree.record, tree.value)):
            raise DataError("tree arrays in the model file have different lengths")
        for i, (lft, rgt) in enumerate(zip(tree.left, tree.right, strict=True)):
            if lft != LEAF and not (i < lft < n and i < rgt < n):
                raise DataError(f"tree node {i} points at children out of order")
        return tree

"""The math of online scoring: each party's contribution and their combination.

Pure numpy, no I/O. Every function here reproduces, for a batch of new rows,
exactly what the model's joint ``predict`` computes for the same rows during
the training job:

* **Linear** (SS-LR with released coefficients, SS linear regression, HE-LR):
  a partner's contribution is its partial score ``((x - mean) @ M) @ w_k``
  encoded as fixed point on Z_2^64 (``frac_bits`` fractional bits) — the
  value its masked sum delivers in :func:`~sharedml.learn.linear._base.masked_sum_to_label`;
  the label holder adds the ring values, decodes them, adds its own partial
  score and the intercept, and applies the link. Equal to the job's predict
  up to float rounding of the label holder's own terms (≪ 1e-9).
* **SecureBoost**: a partner's contribution is the side (left = ``x <
  threshold``) of the row at every split record it owns, bit-packed; the
  label holder walks every tree to a leaf with those sides and its own, and
  sums base score and leaf weights in tree order — bit for bit the job's
  predict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sharedml.errors import ProtocolAbort
from sharedml.learn.linear._base import decode_fixed, encode_fixed
from sharedml.serving.parts import LINEAR, TREES, FeaturePart, LabelPart, PartInfo


class LinearFeaturePart(FeaturePart):
    def __init__(self, info: PartInfo, model: Any, frac_bits: int) -> None:
        self.info = info
        self.feature_names = model.feature_names_in_
        self._mean = np.asarray(model.scaler_.mean, dtype=np.float64)
        self._matrix = np.asarray(model.scaler_.matrix, dtype=np.float64)
        self._coef = np.asarray(model.coef_, dtype=np.float64)
        self._frac = frac_bits

    def contribute(self, X: np.ndarray) -> np.ndarray:
        return encode_fixed(((X - self._mean) @ self._matrix) @ self._coef, self._frac)


class LinearLabelPart(LabelPart):
    def __init__(self, info: PartInfo, model: Any, frac_bits: int) -> None:
        self.info = info
        self.feature_names = model.feature_names_in_
        self.partners = tuple(model.layout_.feature_holders)
        self.task = model.task
        self._model = model
        self._coef = np.asarray(model.coef_, dtype=np.float64)
        self._intercept = float(model.intercept_ or 0.0)
        self._frac = frac_bits
        self._widths = {p: int(model.layout_.n_features[p]) for p in self.partners}

    def check_partner(self, info: PartInfo) -> str | None:
        if info.kind != LINEAR:
            return "its part is not a linear model's"
        if info.n_features != self._widths[info.party]:
            return (f"its part has {info.n_features} features, the model was trained with "
                    f"{self._widths[info.party]}")
        return None

    def combine(self, X: np.ndarray, answers: dict[str, np.ndarray]) -> np.ndarray:
        own = self._model.scaler_.transform(X) @ self._coef
        total: np.ndarray | None = None
        for p in self.partners:
            got = answers[p]
            if got.dtype != np.uint64 or got.shape != (len(X),):
                raise ProtocolAbort("partial scores of the wrong shape", party=p,
                                    step="serve: combine")
            total = got if total is None else total + got
        others = 0.0 if total is None else decode_fixed(total, self._frac)
        return np.asarray(self._model._output(own + self._intercept + others))


class TreeFeaturePart(FeaturePart):
    def __init__(self, info: PartInfo, model: Any) -> None:
        self.info = info
        self.feature_names = None
        self._features = np.asarray(model.table_.features, dtype=np.int64)
        self._thresholds = np.asarray(model.table_.thresholds, dtype=np.float64)

    def contribute(self, X: np.ndarray) -> np.ndarray:
        return np.packbits(X[:, self._features] < self._thresholds, axis=1)


class TreeLabelPart(LabelPart):
    """The trees compiled to ``(T, N)`` arrays, walked for all rows and trees at once."""

    def __init__(self, info: PartInfo, model: Any) -> None:
        self.info = info
        self.feature_names = None
        self.partners = tuple(model.feature_holders_)
        self.task = model.task
        self._model = model
        self._base = float(model.base_score_)
        self._own_features = np.asarray(model.table_.features, dtype=np.int64)
        self._own_thresholds = np.asarray(model.table_.thresholds, dtype=np.float64)
        self._needed = {p: 0 for p in self.partners}
        for tree in model.trees_:
            for i in tree.splits():
                if tree.owner[i] in self._needed:
                    self._needed[tree.owner[i]] = max(self._needed[tree.owner[i]],
                                                      tree.record[i] + 1)
        self._offsets: dict[str, int] = {info.party: 0}
        width = len(self._own_features)
        for p in self.partners:
            self._offsets[p] = width
            width += self._needed[p]
        self._width = max(width, 1)
        self._compile(model.trees_)

    def _compile(self, trees: list[Any]) -> None:
        T, N = len(trees), max((len(t.left) for t in trees), default=1)
        self._left = np.zeros((T, N), dtype=np.int64)
        self._right = np.zeros((T, N), dtype=np.int64)
        self._col = np.full((T, N), -1, dtype=np.int64)
        self._value = np.zeros((T, N), dtype=np.float64)
        depth = np.zeros((T, N), dtype=np.int64)
        for t, tree in enumerate(trees):
            n = len(tree.left)
            self._value[t, :n] = tree.value
            for i in tree.splits():  # children always follow their parent
                self._left[t, i], self._right[t, i] = tree.left[i], tree.right[i]
                self._col[t, i] = self._offsets[tree.owner[i]] + tree.record[i]
                depth[t, tree.left[i]] = depth[t, tree.right[i]] = depth[t, i] + 1
        self._depth = int(depth.max(initial=0))
        self._trees = np.arange(T)

    def check_partner(self, info: PartInfo) -> str | None:
        if info.kind != TREES:
            return "its part is not a SecureBoost model's"
        if info.records < self._needed[info.party]:
            return (f"its split table has {info.records} records, the trees use "
                    f"{self._needed[info.party]}")
        return None

    def combine(self, X: np.ndarray, answers: dict[str, np.ndarray]) -> np.ndarray:
        n = len(X)
        sides = np.zeros((n, self._width), dtype=bool)
        own = len(self._own_features)
        sides[:, :own] = X[:, self._own_features] < self._own_thresholds
        for p in self.partners:
            need, bits = self._needed[p], answers[p]
            if bits.dtype != np.uint8 or bits.ndim != 2 or len(bits) != n or (
                bits.shape[1] * 8 < need
            ):
                raise ProtocolAbort("split sides of the wrong shape", party=p,
                                    step="serve: combine")
            at = self._offsets[p]
            sides[:, at:at + need] = np.unpackbits(bits, axis=1, count=need).astype(bool)
        node = np.zeros((n, len(self._trees)), dtype=np.int64)
        rows = np.arange(n)[:, None]
        for _ in range(self._depth):
            col = self._col[self._trees, node]
            inner = col >= 0
            left = sides[rows, np.where(inner, col, 0)]
            step = np.where(left, self._left[self._trees, node], self._right[self._trees, node])
            node = np.where(inner, step, node)
        leaves = self._value[self._trees, node]
        margin = np.cumsum(np.column_stack([np.full(n, self._base), leaves]), axis=1)[:, -1]
        return np.asarray(self._model._link(margin))


def _info(model: Any, version: str, digest: str, kind: int, records: int) -> PartInfo:
    return PartInfo(version, str(model.party_), kind, digest, int(model.n_features_in_), records)


def linear_part(model: Any, version: str, digest: str, frac_bits: int) -> FeaturePart | LabelPart:
    """``frac_bits``: the fixed-point precision of the training job's masked sums."""
    info = _info(model, version, digest, LINEAR, 0)
    if model.party_ == model.layout_.label_holder:
        return LinearLabelPart(info, model, frac_bits)
    return LinearFeaturePart(info, model, frac_bits)


def tree_part(model: Any, version: str, digest: str) -> FeaturePart | LabelPart:
    info = _info(model, version, digest, TREES, len(model.table_))
    if model.party_ == model.label_holder_:
        return TreeLabelPart(info, model)
    return TreeFeaturePart(info, model)


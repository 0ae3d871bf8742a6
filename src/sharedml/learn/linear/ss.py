"""Secret-shared vertical logistic and linear regression (SS-LR) on the MPC engine.

Protocol (label holder ``L`` with ``X_L, y``; feature holders ``F_k`` with
``X_k``; computing parties share values additively on Z_2^64 with
``frac_bits`` fractional bits; correlated randomness from a dealer or from
Paillier between two parties):

0. Setup. Pre-flight input check (public row/column counts). ``L`` draws the
   public shuffle seed. Every party secret-shares its standardised block
   (``L`` appends a column of ones for the intercept) and ``L`` shares ``y``;
   the blocks form one shared matrix ``X`` (n × D), which is masked **once**
   (:class:`~sharedml.mpc.FixedOperand`: ``X - A`` opened a single time).
   The weights ``w`` (D) start as a public zero. The batches of an epoch go
   in groups of ``group_batches`` (default 3): a group's batches are
   evaluated side by side at the same ``w`` (their rows concatenated, so
   every opening below carries all of them at once) and their steps are
   summed (:func:`~sharedml.learn.linear._core.grouped_batches`). With a
   dealer, the material of each group is asked for in one message while the
   previous group computes (its requests depend only on the batch sizes and
   the public row numbers).
1. Per group with rows ``I = I_1 ∪ … ∪ I_k``: ``z = X[I] @ w`` (one round
   opening ``w - B``; truncated with the sigmoid's output, or by one
   truncation round).
2. ``p = sigmoid~(z)`` with the chosen approximation: ``pwl`` (default) — a
   six-knot piecewise-linear interpolation, one batched comparison plus one
   Beaver round, and its single truncation is also ``z``'s; ``taylor1`` —
   public affine; ``seg3``/``clip_poly3``/``clip_poly5`` — ``z`` clipped to
   ``[-a, a]`` (one comparison, one product), then an odd polynomial;
   ``accurate`` — the engine's exp/reciprocal sigmoid. Linear regression
   uses ``p = z``.
3. ``e = p - y[I]`` (local); ``g_j = X[I_j]^T e[I_j]`` for each batch (one
   round, one column per batch). With a dealer the link's last truncation
   and these products share one round: each ``X[I_j]^T p`` comes from the
   truncation's opening alone (``FixedOperand.truncated_matmul_t`` with
   segments) and ``X[I_j]^T y[I_j]`` is a local sum of the row products
   ``X ⊙ y``, made by one Beaver product before the first batch (y and X
   are fixed). Per group with ``pwl``: 10 rounds (z: 1, the knots'
   comparison: 6, relu: 1, truncation with g: 1, update: 1) — 3.3 per
   mini-batch with the default groups of three.
4. ``w <- w Π_j(1 - lr_j*l2) - Σ_j (lr_j/|I_j|) g_j``: the ``g_j`` are left
   untruncated and every term is truncated together (one round; see
   ``_update``). With groups of one this is plain mini-batch SGD.
5. After the last epoch, ``reveal_weights="own"``: each party receives its own
   block of ``w`` (``L`` its block and the intercept) and nothing else;
   ``"none"``: every party keeps its share of all of ``w``.

Prediction: with released weights each party computes its partial score and
the feature holders' sum reaches ``L`` by a masked sum; with shared weights the
parties share the new rows' blocks and compute ``X @ w`` under MPC; in both
cases only ``L`` learns the score.

Reveals: ``L`` learns the validation scores (if ``X_val`` is given) and
predictions; with ``"own"`` each party learns its own coefficients; nothing
else reaches any party — every opened value is masked by fresh or once-used
uniform randomness. The early-stopping flags and row/column counts are public.

Security model: semi-honest; with ``provider="dealer"`` the dealer must not
collude with any computing party; with ``provider="he"`` (two parties, no
third party) Paillier's DCR assumption. Fixed-point error: at most one ulp
(``2^-frac_bits``) per truncation.

References: Mohassel & Zhang, "SecureML", IEEE S&P 2017 (§4: SGD on shares,
reusing the data mask); Chen et al., "When homomorphic encryption marries
secret sharing: secure large-scale sparse logistic regression", KDD 2021
(vertical SS-LR with per-party blocks).
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

import numpy as np

from sharedml.errors import ProtocolAbort
from sharedml.learn.linear._base import array_or_none, list_or_none, masked_sum_to_label
from sharedml.learn.linear._sgd import SGD_PARAMS, SGDDriver
from sharedml.learn.params import PROVIDER, Param, with_defaults
from sharedml.mpc import nonlinear
from sharedml.mpc.context import TRUNC_MODES
from sharedml.mpc.nonlinear import PIECEWISE, SIGMOID_APPROX
from sharedml.session import Provider, Session

REVEAL = ("own", "none")
#: our clipped fits, plus the engine's exp/reciprocal sigmoid (``accurate``)
SS_SIGMOIDS = (*PIECEWISE, *SIGMOID_APPROX, "accurate")
#: extra fractional bits of the learning-rate factor in the weight update
UPDATE_BITS = 20
#: The parameters of the secret-shared protocol (both SS learners).
SS_PARAMS: dict[str, Param] = {
    "reveal_weights": Param(str, "own", "own: each party receives its own coefficients; none: "
                            "they stay secret-shared", choices=REVEAL),
    "provider": PROVIDER,
    "trunc": Param(str, "pair", "truncation: pair (exact range, one round) or local (two "
                   "parties, no round)", choices=TRUNC_MODES, job=False),
}
#: The linear learners' grouping of mini-batches (module doc, step 0).
GROUP_PARAMS: dict[str, Param] = {
    "group_batches": Param(int, 3, "mini-batches evaluated side by side at the same weights, "
                           "their steps summed: the rounds of one batch for all of them "
                           "(1: plain SGD)", low=1, high=64),
}


class _SSLinear(SGDDriver):
    """Shared machinery of the secret-shared logistic and linear regressions."""

    sigmoid: str
    reveal_weights: str
    provider: Provider | None
    trunc: str

    def _runtime(self, session: Session) -> Any:
        """The session's MPC runtime with this model's provider and truncation, opened."""
        purpose = f"{type(self).__name__} (protocol 'ss')"
        return session.mpc_runtime(self.provider, trunc=self.trunc, purpose=purpose).open()

    # -- sharing the data ----------------------------------------------------------------------
    def _block(self, session: Session, Xs: np.ndarray, party: str) -> np.ndarray | None:
        """This party's block as it enters the shared matrix (``L`` adds the ones column)."""
        if party != session.party:
            return None
        if party == self.layout_.label_holder:
            return np.hstack([Xs, np.ones((Xs.shape[0], 1))])
        return Xs

    def _share_matrix(self, session: Session, mpc: Any, Xs: np.ndarray) -> Any:
        from sharedml.mpc import concatenate

        blocks = [mpc.share(self._block(session, Xs, p), owner=p) for p in self.parties_]
        return concatenate(blocks, axis=1)

    def _offsets(self) -> dict[str, tuple[int, int]]:
        """Each party's column range in the shared matrix (``L``'s includes the intercept)."""
        out, at = {}, 0
        for p in self.parties_:
            width = self.layout_.n_features[p] + (1 if p == self.layout_.label_holder else 0)
            out[p] = (at, at + width)
            at += width
        return out

    # -- training hooks --------------------------------------------------------------------
    def _setup(self, session: Session) -> None:
        from sharedml.mpc import FixedOperand

        self._mpc: Any = self._runtime(session)
        mpc = self._mpc
        self._fx: Any = FixedOperand(self._share_matrix(session, mpc, self._Xs))
        lh = self.layout_.label_holder
        y = None if self._y is None else self._label_columns(self._y)
        self._ys = mpc.share(y if session.party == lh else None, owner=lh)
        self._xy: Any = None
        if self._fusable():
            from sharedml.mpc import beaver

            # X ⊙ y once (one Beaver round, 2f bits): each batch's X[I]ᵀ y[I] is a local sum
            self._xy = beaver.mul(self._fx.x, self._ys)
        self._fxv: Any = None
        if self._Xv is not None:
            self._fxv = FixedOperand(self._share_matrix(session, mpc, self._Xv))

    def _label_columns(self, y: np.ndarray) -> np.ndarray:
        """The label as the label holder shares it: one column (a one-hot row
        per class where a learner has more than two)."""
        return y.reshape(-1, 1)

    def _teardown(self) -> None:
        mpc = getattr(self, "_mpc", None)
        if mpc is not None:
            mpc.close()
        self._mpc = self._fx = self._fxv = self._ys = self._xy = None

    def _init_weights(self, session: Session) -> None:
        width = sum(b - a for a, b in self._offsets().values())
        self._intercept_row = self._offsets()[self.layout_.label_holder][1] - 1
        self._w = self._mpc.public(np.zeros((width, 1)))
        self.coef_, self.intercept_ = None, None

    def _step(self, session: Session, idx: np.ndarray, lr: float) -> None:
        self._step_group(session, [idx], [lr])

    def _step_group(self, session: Session, members: list[np.ndarray], lrs: list[float]) -> None:
        """One group of batches side by side; with a dealer, its material comes
        prefetched (see module doc)."""
        provider = self._mpc.provider
        if not provider.supports_prefetch:
            self._run_group(members, lrs)
            return
        plans: dict[tuple[int, ...], list[Any]] = self.__dict__.setdefault("_plans", {})
        key, rows = _sizes(members), np.concatenate(members)
        plan = plans.get(key)
        if plan is None:  # first group of these sizes: record its requests
            with provider.recording() as recorded:
                self._run_group(members, lrs)
            plans[key] = list(recorded)
            self._ahead = False
            return
        if not getattr(self, "_ahead", False):
            provider.prefetch(_plan_for(plan, rows))
        upcoming: list[np.ndarray] | None = getattr(self, "_next_group", None)
        self._ahead = False
        if upcoming is not None and _sizes(upcoming) in plans:
            # the dealer makes the next group's material meanwhile
            provider.prefetch(_plan_for(plans[_sizes(upcoming)], np.concatenate(upcoming)))
            self._ahead = True
        self._run_group(members, lrs)

    def _run_group(self, members: list[np.ndarray], lrs: list[float]) -> None:
        if len(members) == 1:
            self._batch(members[0], lrs[0])
        else:
            self._batch_group(members, lrs)

    def _batch(self, idx: np.ndarray, lr: float) -> None:
        """One batch: a group of one (a protocol built on this class may override it)."""
        self._batch_group([idx], [lr])

    def _batch_group(self, members: list[np.ndarray], lrs: list[float]) -> None:
        """The group's batches at the same weights: each step is one product, one
        link and one gradient for all of them (their openings travel together)."""
        rows, sizes = np.concatenate(members), list(_sizes(members))
        z_raw = self._fx.matmul(self._w, rows=rows, truncate=False)
        raw = self._link_raw(z_raw) if self._xy is not None else None
        if raw is not None:
            # the link's last truncation is also the opening of each batch's X[I]ᵀ p
            acc, bits, base = raw
            xp = self._fx.truncated_matmul_t(acc, bits, rows=rows, offset=base, segments=sizes)
            g_raw = xp - self._xy_rows(members)
        else:
            from sharedml.mpc import SharedTensor
            from sharedml.mpc.material import segment_columns

            e = self._link(z_raw) - self._ys[rows]
            per_batch = SharedTensor(self._mpc, segment_columns(e.share, sizes), e.scale)
            g_raw = self._fx.matmul(per_batch, rows=rows, transpose=True, truncate=False)
        self._w = self._update(self._w, g_raw, lrs, sizes)

    def _fusable(self) -> bool:
        """Whether the link's last truncation can share the gradient product's round."""
        mpc = self._mpc
        return bool(mpc.provider.supports_trunc_fixed and mpc.trunc_mode == "pair")

    def _xy_rows(self, members: list[np.ndarray]) -> Any:
        """Shared ``X[I]ᵀ y[I]`` of each batch ``I`` (2f bits, one column each): local
        sums of the row products ``X ⊙ y``."""
        from sharedml.mpc import SharedTensor

        sums = [self._xy.share[idx].sum(axis=0, dtype=np.uint64) for idx in members]
        return SharedTensor(self._mpc, np.stack(sums, axis=1), self._xy.scale)

    def _link_raw(self, z_raw: Any) -> tuple[Any, int, float] | None:
        """``(acc, bits, base)`` with ``link(z) = ⌊acc / 2^bits⌋ + base``, or
        ``None`` when the link cannot leave its last truncation to the product."""
        return z_raw, self._mpc.frac_bits, 0.0

    def _update(self, w: Any, g_raw: Any, lrs: list[float], sizes: list[int]) -> Any:
        """``w Π(1 - lr_i*l2) - Σ (lr_i/|I_i|) g_i`` (one column of ``g_raw`` per
        batch of the group) with a single truncation.

        ``g_raw`` carries 2f fractional bits (untruncated products). Every term
        is brought to ``2f + UPDATE_BITS`` bits with public integer factors and
        truncated once by ``f + UPDATE_BITS``; the result is exact to one ulp
        while ``|w| < 2^(62-2f-UPDATE_BITS)`` and ``Σ |lr_i g_i / |I_i||`` too
        (1024 at f = 16).
        """
        from sharedml.mpc import SharedTensor, truncate

        f = self._mpc.frac_bits
        if g_raw.scale != 2 * f or w.scale != f or g_raw.shape[1] != len(lrs):
            raise ProtocolAbort("unexpected fixed-point scales in the update", party=self.party_)
        decay = np.full(w.shape, float(np.prod([1.0 - lr * self.l2 for lr in lrs])))
        decay[self._intercept_row] = 1.0  # no L2 on the intercept
        kw = np.round(decay * float(1 << (f + UPDATE_BITS))).astype(np.int64).view(np.uint64)
        kg = np.array(
            [round(lr / size * float(1 << UPDATE_BITS)) for lr, size in zip(lrs, sizes, strict=True)],
            dtype=np.uint64,
        )
        steps = (g_raw.share * kg.reshape(1, -1)).sum(axis=1, dtype=np.uint64, keepdims=True)
        both = SharedTensor(self._mpc, w.share * kw - steps, 2 * f + UPDATE_BITS)
        out = truncate(both, f + UPDATE_BITS)
        out.scale = f
        return out

    def _link(self, z_raw: Any) -> Any:
        """The model's output from the untruncated scores (2f fractional bits)."""
        from sharedml.mpc import rescale

        return rescale(z_raw)

    def _scores(self, session: Session, Xs: np.ndarray, *, validation: bool) -> np.ndarray | None:
        lh = self.layout_.label_holder
        if validation:
            z = self._fxv.matmul(self._w)
            out = z.reveal(to=lh)
            return None if out is None else np.asarray(out).ravel()
        if self.reveal_weights == "own":
            if self.coef_ is None:
                raise ProtocolAbort("released coefficients missing", party=session.party)
            own = session.local_rows(partial(np.dot, b=self.coef_), Xs)  # 8.5-2
            if session.party == lh:
                others = masked_sum_to_label(session, self.layout_, None, "score")
                return own + (self.intercept_ or 0.0) + (0.0 if others is None else others)
            masked_sum_to_label(session, self.layout_, own, "score")
            return None
        return self._shared_scores(session, Xs)

    def _shared_scores(self, session: Session, Xs: np.ndarray) -> np.ndarray | None:
        from sharedml.mpc import SharedTensor

        if self.w_share_ is None:
            raise ProtocolAbort("weight shares missing", party=session.party)
        mpc = self._runtime(session)
        try:
            X = self._share_matrix(session, mpc, Xs)
            w = SharedTensor(mpc, self.w_share_.reshape(-1, 1), session.frac_bits)
            out = (X @ w).reveal(to=self.layout_.label_holder)
        finally:
            mpc.close()
        return None if out is None else np.asarray(out).ravel()

    def _snapshot(self) -> Any:
        return self._w.share.copy()

    def _restore(self, snap: Any) -> None:
        from sharedml.mpc import SharedTensor

        self._w = SharedTensor(self._mpc, snap, self._w.scale)

    def _finish(self, session: Session) -> None:
        self.w_share_: np.ndarray | None = None
        if self.reveal_weights == "none":
            self.w_share_ = self._w.share.ravel().copy()
            self.frac_bits_ = int(session.frac_bits)
            return
        for p, (a, b) in self._offsets().items():
            got = self._w[a:b].reveal(to=p)
            if p == session.party:
                mine = np.asarray(got).ravel()
                if p == self.layout_.label_holder:
                    self.coef_, self.intercept_ = mine[:-1], float(mine[-1])
                else:
                    self.coef_ = mine

    # -- model file ------------------------------------------------------------------------
    def _part(self) -> dict[str, Any]:
        share = getattr(self, "w_share_", None)
        return {
            **self._common_part(),
            "coef": list_or_none(self.coef_),
            "intercept": self.intercept_,
            "weight_share": None if share is None else [int(v) for v in share],
            "frac_bits": getattr(self, "frac_bits_", None),
        }

    def _set_part(self, part: dict[str, Any]) -> None:
        self._set_common_part(part)
        self.coef_ = array_or_none(part["coef"])
        self.intercept_ = None if part.get("intercept") is None else float(part["intercept"])
        share = part.get("weight_share")
        self.w_share_ = None if share is None else np.array(share, dtype=np.uint64)
        if part.get("frac_bits") is not None:
            self.frac_bits_ = int(part["frac_bits"])


class SSLogisticRegression(_SSLinear):
    """Secret-shared vertical logistic regression (see the module docstring).

    Parameters: declared in :attr:`params` — the SGD ones
    (:data:`~sharedml.learn.linear._sgd.SGD_PARAMS`), ``sigmoid`` and the
    protocol's (:data:`SS_PARAMS`; ``provider`` ``None``: the session's dealer) and
    ``group_batches`` (:data:`GROUP_PARAMS`).
    """

    model_type = "SSLogisticRegression"
    task = "classification"
    params: ClassVar[dict[str, Param]] = {
        **SGD_PARAMS,
        "sigmoid": Param(str, "pwl", "the sigmoid's approximation under MPC", choices=SS_SIGMOIDS),
        **SS_PARAMS,
        **GROUP_PARAMS,
    }
    group_batches: int

    def _group(self) -> int:
        return self.group_batches

    def _fusable(self) -> bool:
        return self.sigmoid in PIECEWISE and super()._fusable()

    def _link_raw(self, z_raw: Any) -> tuple[Any, int, float] | None:
        if self.sigmoid in PIECEWISE:
            return nonlinear.piecewise_raw(z_raw, PIECEWISE[self.sigmoid])
        return None

    def _link(self, z_raw: Any) -> Any:
        if self.sigmoid in PIECEWISE:
            return nonlinear.piecewise_sigmoid(z_raw, PIECEWISE[self.sigmoid])
        from sharedml.mpc import rescale

        return nonlinear.approx_sigmoid(rescale(z_raw), self.sigmoid)


class SSLinearRegression(_SSLinear):
    """Secret-shared vertical linear regression (squared loss; see module docstring).

    Same parameters as :class:`SSLogisticRegression` without ``sigmoid``;
    ``validation_metric`` ``auto`` = RMSE; ``scaling`` defaults to ``whiten``
    (each party decorrelates its own columns, so SGD converges on collinear
    blocks). The label is standardised at the label holder (its mean and
    scale stay there).
    """

    model_type = "SSLinearRegression"
    task = "regression"
    params: ClassVar[dict[str, Param]] = {
        **with_defaults(SGD_PARAMS, epochs=20, batch_size=64, learning_rate=0.3, l2=0.0,
                        scaling="whiten"),
        **SS_PARAMS,
        **GROUP_PARAMS,
    }
    sigmoid = "none"
    group_batches: int

    def _group(self) -> int:
        return self.group_batches


def _sizes(members: list[np.ndarray]) -> tuple[int, ...]:
    return tuple(len(idx) for idx in members)


def _plan_for(plan: list[Any], idx: np.ndarray) -> list[Any]:
    """A recorded batch plan with the row numbers of batch ``idx``."""
    rows = np.asarray(idx, dtype=np.int64)
    return [(kind, dims, None if r is None else rows) for kind, dims, r in plan]

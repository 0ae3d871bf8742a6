"""Fully secret-shared vertical MLP (``protocol: ss``) on the MPC engine.

Protocol (label holder ``L`` with ``X_L, y``; feature holders ``F_k`` with
``X_k``; computing parties hold additive shares on Z_2^64 with ``frac_bits``
fractional bits; correlated randomness from a dealer or from Paillier between
two parties):

0. Setup, as SS-LR (:mod:`sharedml.learn.linear.ss`): pre-flight check of the
   public counts, each party standardises its own columns, ``L`` draws the
   public shuffle seed, every party shares its block (``L`` appends a column
   of ones, which carries the first layer's bias) and ``L`` shares ``y``; the
   blocks form one shared matrix ``X`` masked **once**
   (:class:`~sharedml.mpc.FixedOperand`). The starting weights are public
   (Glorot-uniform from the public seed: they carry no data) and are shared
   trivially. With a dealer, each batch's material is asked for while the
   previous batch computes.
1. Forward, per batch ``I`` (:mod:`sharedml.learn.nn._ss_ops`):
   ``a_1 = X[I] W_1`` (opens only ``W_1``'s mask); every hidden layer
   ``h = relu(a)`` with one batched comparison, one product and one
   truncation; ``a_{l+1} = h W_{l+1} + b_{l+1}`` (Beaver); the output
   ``p = sigmoid~(z)`` with SS-LR's approximations (``pwl`` by default: one
   comparison, one product, one truncation), with ``n_classes`` > 2 one logit
   per class and ``p = softmax~(z)`` (:func:`~sharedml.learn.nn._ss_ops.softmax_rows`:
   row maximum, exp and reciprocal on shares, ~120 rounds; ``L`` shares ``y``
   one-hot), or ``p = z`` for regression.
2. Backward: ``e = p - y[I]`` (local; the gradient of cross-entropy through
   the sigmoid or the softmax, or of half the squared error); per layer, the weight gradient
   ``h^T d`` and the error ``d W^T`` in one round, ReLU's derivative by
   multiplying the kept comparison bits into it (one round) and one
   truncation; ``X[I]^T d_1`` opens only ``d_1``'s mask. About 23 rounds per
   batch for one hidden layer.
3. Update (:mod:`sharedml.learn.nn._ss_optim`): SGD with weight decay in one
   truncation, or Adam with its division and square root in MPC (gradient
   clipped to ±16, denominator capped; bounds there).
4. After the last epoch, ``reveal_weights="none"`` (default): every party
   keeps its share of every weight; ``"own"``: each party receives its own
   rows of ``W_1`` and ``L`` the rest of the network.

Prediction: with shared weights the parties share the new rows and run step 1
under MPC; only ``L`` receives the output ``z``. With released weights each
feature holder sends ``X_k W_1^(k)`` (its first-layer partial sums, 32 per
row for 32 units) to ``L`` by a masked sum, and ``L`` runs the rest.

Reveals: ``L`` learns the validation outputs (if ``X_val`` is given) and the
predictions; with ``"own"`` each party its own part of the weights, and ``L``
at prediction time the sum of the feature holders' first-layer partial sums,
which for as many units as the feature holders have columns lets ``L``
recover their standardised columns up to an unknown linear map — so ``"own"``
suits a deployment where that map is the accepted release, ``"none"`` any
other. Nothing else reaches any party: every opened value is masked by fresh
or once-used uniform randomness. Row and column counts, layer sizes and the
early-stopping flags are public.

Security model: semi-honest; with ``provider="dealer"`` the dealer must not
collude with any computing party; with ``provider="he"`` (two parties, no
third party) Paillier's DCR assumption — it works, but every comparison's
material is made with Paillier: 64 rows, one epoch of a 5→4→1 network took
8 minutes here, against milliseconds with a dealer. Bounds (f = 16): pre-activations
|a| < 32768, outputs |z| < 2^13 (the sigmoid's truncation), weights and each
update below 1024 in magnitude; one ulp (2^-f) per truncation; ReLU may pass
values within n - 1 ulps below 0 (see ``relu_layer``).

References: Mohassel & Zhang, "SecureML", IEEE S&P 2017 (§4.3, neural
networks on shares with a reused data mask); Knott et al., "CrypTen", NeurIPS
2021 (ReLU by comparison, training on shares); Wagh et al., "SecureNN",
PETS 2019.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from sharedml.errors import ProtocolAbort
from sharedml.learn.linear._base import masked_sum_to_label
from sharedml.learn.linear.ss import SS_PARAMS, SS_SIGMOIDS, _SSLinear
from sharedml.learn.nn import _ss_ops
from sharedml.learn.nn._core import Dense, activate, init_layers, one_hot, out_units
from sharedml.learn.nn._params import (
    CLASSES_PARAM,
    MLP_SGD_PARAMS,
    OPTIMIZER_PARAMS,
    NetParams,
    activation_param,
    arrays_from_json,
    arrays_to_json,
    shares_from_json,
    shares_to_json,
    sizes_param,
)
from sharedml.learn.nn._ss_optim import SharedAdam, SharedSGD
from sharedml.learn.params import Param, with_defaults
from sharedml.mpc import nonlinear
from sharedml.mpc.nonlinear import PIECEWISE
from sharedml.session import Session

SS_ACTIVATIONS = ("relu",)
#: The secret-shared MLP's parameters (both tasks)
SS_MLP_PARAMS: dict[str, Param] = {
    "hidden_layer_sizes": sizes_param((32,), "units of each hidden layer"),
    "activation": activation_param(SS_ACTIVATIONS),
    **MLP_SGD_PARAMS,
    **OPTIMIZER_PARAMS,
    **with_defaults(SS_PARAMS, reveal_weights="none"),
}


class _SSMLP(NetParams, _SSLinear):
    """The secret-shared MLP on SS-LR's data sharing and batch driver."""

    hidden_layer_sizes: list[int]
    activation: str
    n_classes = 2

    # -- parameters ----------------------------------------------------------------------
    def _check_params(self) -> None:
        super()._check_params()
        self._check_net_params(hidden_layer_sizes=(self.hidden_layer_sizes, 1))

    def _classes(self) -> int:
        return self.n_classes

    def _label_columns(self, y: np.ndarray) -> np.ndarray:
        if self._outputs() > 1:
            return one_hot(y, self._outputs())
        return super()._label_columns(y)

    def _outputs(self) -> int:
        return out_units(self.task, self.n_classes)

    def _fusable(self) -> bool:
        return False  # no X ⊙ y product: the output error is not the data's

    def _shuffle_seed(self, session: Session) -> bytes:
        self._seed = super()._shuffle_seed(session)
        return self._seed

    # -- weights -------------------------------------------------------------------------
    def _start(self) -> list[np.ndarray]:
        """The public starting weights ``[W1 (with b1 at L's ones row), W2, b2, ...]``."""
        sizes = [
            sum(self.layout_.n_features[p] for p in self.parties_),
            *self.hidden_layer_sizes,
            self._outputs(),
        ]
        return first_layer_with_bias(
            init_layers(self._seed, "ss", sizes), self.parties_, self.layout_
        )

    def _decay(self) -> np.ndarray:
        """1 on every weight, 0 on biases (W1's ones row included), flat."""
        masks = [np.ones(p.shape) for p in self._params]
        masks[0][self._offsets()[self.layout_.label_holder][1] - 1] = 0.0
        for i in range(2, len(masks), 2):
            masks[i][:] = 0.0
        return np.concatenate([m.ravel() for m in masks])

    def _init_weights(self, session: Session) -> None:
        self._params = [self._mpc.public(w) for w in self._start()]
        self._shapes = [p.shape for p in self._params]
        size = sum(p.size for p in self._params)
        self._opt: Any = (
            SharedAdam(self._mpc, size, self.beta1, self.beta2, self.adam_epsilon)
            if self.optimizer == "adam"
            else SharedSGD()
        )
        self._decay_mask = self._decay()
        self.layers_: list[np.ndarray] | None = None

    # -- one batch -------------------------------------------------------------------------
    def _batch(self, idx: np.ndarray, lr: float) -> None:
        from sharedml.mpc import concatenate

        W1 = self._params[0]
        z_raw, cache = _ss_ops.forward(self._fx.matmul(W1, rows=idx, truncate=False), self._params)
        e = self._link(z_raw) - self._ys[idx]
        grads, d1 = _ss_ops.backward(e, self._params, cache)
        g1 = self._fx.matmul(d1, rows=idx, transpose=True, truncate=False)
        flat_w = concatenate([p.reshape(-1) for p in self._params])
        flat_g = concatenate([g.reshape(-1) for g in [g1, *grads]])
        new = self._opt.step(flat_w, flat_g, self._decay_mask, lr, len(idx), self.l2)
        self._params, at = [], 0
        for shape in self._shapes:
            size = int(np.prod(shape))
            self._params.append(new[at : at + size].reshape(shape))
            at += size

    def _link(self, z_raw: Any) -> Any:
        from sharedml.mpc import rescale

        if self.task != "classification":
            return rescale(z_raw)
        if self._outputs() > 1:
            return _ss_ops.softmax_rows(rescale(z_raw))
        if self.sigmoid in PIECEWISE:
            return nonlinear.piecewise_sigmoid(z_raw, PIECEWISE[self.sigmoid])
        return nonlinear.approx_sigmoid(rescale(z_raw), self.sigmoid)

    # -- scores at the label holder --------------------------------------------------------
    def _scores(self, session: Session, Xs: np.ndarray, *, validation: bool) -> np.ndarray | None:
        from sharedml.mpc import rescale

        lh = self.layout_.label_holder
        if validation:
            z_raw, _ = _ss_ops.forward(
                self._fxv.matmul(self._params[0], truncate=False), self._params
            )
            return _logits(rescale(z_raw).reveal(to=lh))
        if self.reveal_weights == "own":
            return self._released_scores(session, Xs)
        return self._shared_scores(session, Xs)

    def _released_scores(self, session: Session, Xs: np.ndarray) -> np.ndarray | None:
        if self.layers_ is None:
            raise ProtocolAbort("released weights missing", party=session.party)
        if session.party != self.layout_.label_holder:
            masked_sum_to_label(session, self.layout_, Xs @ self.layers_[0], "hidden")
            return None
        own = Xs @ self.layers_[0][:-1] + self.layers_[0][-1]  # L's rows end with b1
        others = masked_sum_to_label(session, self.layout_, None, "hidden")
        h = activate(self.activation, own + (0.0 if others is None else others))
        rest = [[self.layers_[i], self.layers_[i + 1]] for i in range(1, len(self.layers_), 2)]
        return _logits(Dense(rest, self.activation, linear_out=True).forward(h))

    def _shared_scores(self, session: Session, Xs: np.ndarray) -> np.ndarray | None:
        from sharedml.mpc import SharedTensor, rescale

        if self.w_shares_ is None:
            raise ProtocolAbort("weight shares missing", party=session.party)
        mpc = self._runtime(session)
        try:
            X = self._share_matrix(session, mpc, Xs)
            params = [SharedTensor(mpc, s, session.frac_bits) for s in self.w_shares_]
            (a1,) = _ss_ops.matmuls([(X, params[0])])
            z_raw, _ = _ss_ops.forward(a1, params)
            out = rescale(z_raw).reveal(to=self.layout_.label_holder)
        finally:
            mpc.close()
        return _logits(out)

    # -- early stopping and the end of training ---------------------------------------------
    def _snapshot(self) -> Any:
        return [p.share.copy() for p in self._params]

    def _restore(self, snap: Any) -> None:
        from sharedml.mpc import SharedTensor

        self._params = [SharedTensor(self._mpc, s, self._mpc.frac_bits) for s in snap]

    def _finish(self, session: Session) -> None:
        self.w_shares_: list[np.ndarray] | None = None
        self.frac_bits_ = int(session.frac_bits)
        if self.reveal_weights == "none":
            self.w_shares_ = [p.share.copy() for p in self._params]
            return
        lh = self.layout_.label_holder
        for p, (a, b) in self._offsets().items():
            got = self._params[0][a:b].reveal(to=p)
            if p == session.party:
                self.layers_ = [np.asarray(got)]
        rest = [p.reveal(to=lh) for p in self._params[1:]]
        if session.party == lh and self.layers_ is not None:
            self.layers_ += [np.asarray(w) for w in rest]

    # -- model file ------------------------------------------------------------------------
    def _part(self) -> dict[str, Any]:
        return {
            **self._common_part(),
            "layers": arrays_to_json(getattr(self, "layers_", None)),
            "weight_shares": shares_to_json(getattr(self, "w_shares_", None)),
            "frac_bits": getattr(self, "frac_bits_", None),
        }

    def _set_part(self, part: dict[str, Any]) -> None:
        self._set_common_part(part)
        self.layers_ = arrays_from_json(part.get("layers"))
        self.w_shares_ = shares_from_json(part.get("weight_shares"))
        if part.get("frac_bits") is not None:
            self.frac_bits_ = int(part["frac_bits"])


def _logits(z: np.ndarray | None) -> np.ndarray | None:
    """The output at ``L``: one logit per row, or rows × classes."""
    if z is None:
        return None
    z = np.asarray(z)
    return z if z.ndim == 2 and z.shape[1] > 1 else z.ravel()


def first_layer_with_bias(
    layers: list[list[np.ndarray]], parties: tuple[str, ...], layout: Any
) -> list[np.ndarray]:
    """``[W1, W2, b2, ...]`` with the first layer's bias as a row of W1 after
    the label holder's columns (where its ones column sits in the shared X)."""
    W1, b1 = layers[0]
    blocks, at = [], 0
    for p in parties:
        k = layout.n_features[p]
        blocks.append(W1[at : at + k])
        at += k
        if p == layout.label_holder:
            blocks.append(b1[None, :])
    out = [np.vstack(blocks)]
    for W, b in layers[1:]:
        out += [W, b]
    return out


class SSMLPClassifier(_SSMLP):
    """Secret-shared vertical MLP for 0/1 labels (see the module docstring).

    Parameters: declared in :attr:`params` — the layers (``hidden_layer_sizes``,
    ``activation``), SGD's (``l2`` is the weight decay), the optimiser's
    (``sgd | adam``), ``sigmoid`` (the output's approximation, as SS-LR),
    ``n_classes`` (above 2: labels 0 .. n_classes - 1, a softmax output,
    ``predict`` gives rows × n_classes probabilities) and
    the protocol's (``reveal_weights`` ``none | own``, ``provider``: the
    session's dealer by default, ``trunc``).
    """

    model_type = "SSMLPClassifier"
    task = "classification"
    params: ClassVar[dict[str, Param]] = {
        **SS_MLP_PARAMS,
        "n_classes": CLASSES_PARAM,
        "sigmoid": Param(
            str, "pwl", "the output sigmoid's approximation under MPC", choices=SS_SIGMOIDS
        ),
    }


class SSMLPRegressor(_SSMLP):
    """Secret-shared vertical MLP for a real label, squared error (see the
    module docstring); the parameters of :class:`SSMLPClassifier` but
    ``sigmoid``. The label is standardised at the label holder (its mean
    and scale stay there)."""

    model_type = "SSMLPRegressor"
    task = "regression"
    params: ClassVar[dict[str, Param]] = SS_MLP_PARAMS
    sigmoid = "none"

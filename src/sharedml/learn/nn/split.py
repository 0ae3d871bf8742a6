"""Split vertical MLP (``protocol: split``): private bottom nets, an interactive
layer on secret shares, a private top net at the label holder.

Protocol (label holder ``L`` with ``X_L, y``; feature holders ``F_k``; party
``P`` holds bottom net ``B_P``, ``L`` also the top net ``T``; the interactive
layer has one block ``W_P`` per party and a bias ``c``: each feature holder's
block is secret-shared on the MPC engine, dealer or HE randomness; ``L``'s
block and ``c`` are ``L``'s own, in plaintext):

0. Setup: pre-flight, local standardisation and ``L``'s public shuffle seed as
   SS-LR. Each party draws its bottom net and its block ``W_P`` from its own
   secret seed; each ``F_k`` shares ``W_k``; ``L`` keeps ``W_L`` and ``c``
   (a public zero at the start) and draws ``T``. A bottom net runs on numpy,
   or on torch where it is installed (``bottom_backend``; the same numbers,
   and nothing else changes on the wire). Without ``bottom_layer_sizes`` a
   party's embedding is its standardised columns (then the network is exactly
   one MLP whose first layer is computed partly on shares).
1. Per batch ``I``: each party computes its embedding ``h_P = B_P(X_P[I])``
   in plaintext; each ``F_k`` shares it (no traffic: its shape, batch rows ×
   width, is fixed by the public layout).
2. Interactive layer: ``Σ_k h_k W_k`` on shares (Beaver products, one round
   for all feature holders), revealed to ``L`` only, untruncated (exact);
   ``L`` adds its own ``h_L W_L + c`` in plaintext: ``u``.
3. ``L`` runs ``T`` on ``act(u)``, the loss (cross-entropy on the exact
   sigmoid, or on the softmax of one logit per class when ``n_classes`` > 2,
   or squared error), backpropagates to ``du`` and updates ``T``.
   With label DP, ``du``'s rows are clipped and noised here
   (:mod:`sharedml.learn.nn.dp`). ``L`` shares ``du``, and uses it in
   plaintext for its own block: ``h_L^T du`` and ``Σ du`` update ``W_L`` and
   ``c``, ``du W_L^T`` is its embedding's gradient.
4. On shares, one round: ``H^T du`` (the gradient of the feature holders'
   blocks; ``H`` is their embeddings side by side, ``W`` their blocks
   stacked) and ``du W^T``, whose columns of ``F_k`` are opened to ``F_k``
   only (sent now, received after step 5's round, so the two overlap); each
   party backpropagates its embedding's gradient through ``B_P`` and updates
   it.
5. The feature holders' blocks are updated on shares (SGD or Adam as the
   secret-shared MLP, :mod:`sharedml.learn.nn._ss_optim`); ``L``'s block and
   ``c`` by the same formula in plaintext. Three round trips and a one-way
   opening per batch with SGD (step 2's product and opening, step 4's
   product, step 5's truncation with step 4's opening); no shape headers.

After training, the feature holders' blocks stay shared; every party keeps
its bottom net, ``L`` its block, ``c`` and the top net. Prediction runs steps
1-2 and ``T`` at ``L``.

Cost: keeping ``L``'s block out of the shares (it reveals nothing new: ``L``
could always follow it, below) leaves only the feature holders' columns in
the Beaver products, and ``L``'s gradients in plaintext — on default_credit
(13 of 23 columns at ``L``) a quarter less CPU per party, a third less at
the dealer and a third less time per epoch (``bench/nn.py``, load 15-40).

Reveals: ``L`` learns ``u`` (batch rows × ``interactive_size``) every step,
and holds ``W_L`` and ``c`` (it could follow them anyway: it knows ``h_L``,
``du`` and the start), so it learns the feature holders' summed contribution
``Σ_k h_k W_k`` per row; with one feature holder and ``interactive_size`` at
least that party's embedding width, this is the embedding up to an unknown
linear map (with ``bottom_layer_sizes`` empty: the standardised columns up to
an unknown linear map). ``L`` never receives an embedding or a share it could
combine. ``F_k`` learns ``du W_k^T`` for its own rows, the gradient at its
embedding, which carries label information (Li et al., "Label leakage and
protection in two-party split learning", ICLR 2022): label DP bounds it;
``W_k`` stays shared, and nothing of ``W_L`` or ``c`` reaches ``F_k``.
Validation outputs and predictions reach ``L`` only. The secret-shared MLP
(:mod:`sharedml.learn.nn.ss`) reveals none of this and is slower.

Security model: semi-honest; with a dealer, the dealer must not collude with
any party; with HE, Paillier's DCR assumption (no comparison is needed, so
this is practical: 64 rows, one epoch, 50 s here including the key); label DP holds against any
coalition of feature holders (and the dealer) for their view of training.

References: Vepakomma et al., "Split learning for health", 2018; FATE's
hetero-NN interactive layer (Zhang et al., "Additively homomorphic encryption
based deep neural network for asymmetrically collaborative machine learning",
2020), with secret shares instead of Paillier ciphertexts.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np

from sharedml.errors import ProtocolAbort
from sharedml.learn.linear.ss import SS_PARAMS, _SSLinear
from sharedml.learn.nn import _ss_ops, dp
from sharedml.learn.nn._core import (
    ACTIVATIONS,
    Dense,
    activate,
    activation_grad,
    init_layers,
    make_optimizer,
    out_units,
    output_error,
)
from sharedml.learn.nn._params import (
    CLASSES_PARAM,
    MAX_UNITS,
    MLP_SGD_PARAMS,
    OPTIMIZER_PARAMS,
    NetParams,
    activation_param,
    sizes_param,
)
from sharedml.learn.nn._split_part import SplitPart
from sharedml.learn.nn._ss_optim import SharedAdam, SharedSGD
from sharedml.learn.nn._torch_net import BACKENDS, bottom_net
from sharedml.learn.params import Param
from sharedml.session import Session

#: The split MLP's parameters (both tasks)
SPLIT_PARAMS: dict[str, Param] = {
    "bottom_layer_sizes": sizes_param(
        (),
        "units of each party's own hidden layers (none: "
        "its standardised columns are its embedding)",
    ),
    "bottom_backend": Param(
        str,
        "auto",
        "each party's bottom net on numpy or torch (auto: torch when installed there; "
        "the same results either way)",
        choices=BACKENDS,
    ),
    "interactive_size": Param(
        int,
        32,
        "units of the interactive layer (the feature holders' blocks on shares, the label "
        "holder's block and bias its own)",
        low=1,
        high=MAX_UNITS,
    ),
    "top_layer_sizes": sizes_param((), "units of the label holder's hidden layers after it"),
    "activation": activation_param(ACTIVATIONS),
    **MLP_SGD_PARAMS,
    **OPTIMIZER_PARAMS,
    "label_dp_noise": Param(
        float,
        0.0,
        "label DP: noise multiplier on the gradient the label holder sends back (0: off)",
        low=0,
    ),
    "label_dp_clip": Param(
        float, 1.0, "label DP: L2 bound of each row of that gradient", low=0, open_low=True
    ),
    "label_dp_delta": Param(
        float,
        1e-5,
        "label DP: δ at which ε is reported",
        low=0,
        high=1,
        open_low=True,
        open_high=True,
    ),
    "provider": SS_PARAMS["provider"],
    "trunc": SS_PARAMS["trunc"],
}


class _SplitMLP(SplitPart, NetParams, _SSLinear):
    """The split MLP on SS-LR's batch driver and MPC runtime."""

    sigmoid = "accurate"  # the output is computed in plaintext at L: exact
    n_classes = 2
    reveal_weights = "none"  # the interactive layer stays shared
    activation: str
    bottom_layer_sizes: Any
    top_layer_sizes: Any
    interactive_size: int
    label_dp_noise: float
    label_dp_clip: float
    label_dp_delta: float
    bottom_backend: str

    # -- parameters ----------------------------------------------------------------------
    def _check_params(self) -> None:
        super()._check_params()
        self._check_net_params(
            bottom_layer_sizes=(self.bottom_layer_sizes, 0),
            top_layer_sizes=(self.top_layer_sizes, 0),
        )

    def _classes(self) -> int:
        return self.n_classes

    # -- setup -----------------------------------------------------------------------------
    def _setup(self, session: Session) -> None:
        self._mpc: Any = self._runtime(session)
        self._guard: Any = dp.NoNoise()
        self.label_dp_epsilon_: float | None = None
        if self.label_dp_noise > 0:
            self.label_dp_epsilon_ = dp.epsilon(
                self.label_dp_noise, self.epochs, self.label_dp_delta
            )
            rng = session.rng("sharedml.nn/label-dp")
            self._guard = dp.LabelNoise(self.label_dp_noise, self.label_dp_clip, rng)

    def _init_weights(self, session: Session) -> None:
        me, lh, mpc = session.party, self.layout_.label_holder, self._mpc
        seed = session.seed  # this party's own secret: nobody else can redo its start
        sizes = [self.layout_.n_features[me], *self.bottom_layer_sizes]
        layers = init_layers(seed, "split/bottom", sizes)
        self._bottom = bottom_net(self.bottom_backend, layers, self.activation)
        width = sizes[-1]
        w_mine = init_layers(seed, "split/interactive", [width, self.interactive_size])[0][0]
        self._W = [mpc.share(w_mine if p == me else None, owner=p) for p in self._feature_parties]
        # L's block and the bias: L's own, in plaintext (step 0)
        self._own: list[np.ndarray] | None = None
        self._top: Dense | None = None
        if me == lh:
            self._own = [w_mine, np.zeros(self.interactive_size)]
            out = out_units(self.task, self.n_classes)
            top = [self.interactive_size, *self.top_layer_sizes, out]
            self._top = Dense(init_layers(seed, "split/top", top), self.activation, linear_out=True)
        opt = (self.optimizer, self.beta1, self.beta2, self.adam_epsilon)
        self._local_opt = {k: make_optimizer(*opt) for k in ("bottom", "top", "own")}
        size = sum(w.size for w in self._W)
        self._shared_opt: Any = (
            SharedAdam(mpc, size, self.beta1, self.beta2, self.adam_epsilon)
            if self.optimizer == "adam"
            else SharedSGD()
        )

    @property
    def _feature_parties(self) -> list[str]:
        """The parties whose interactive blocks live on shares (all but ``L``)."""
        return [p for p in self.parties_ if p != self.layout_.label_holder]

    # -- one batch -------------------------------------------------------------------------
    def _batch(self, idx: np.ndarray, lr: float) -> None:
        from sharedml.mpc import concatenate

        mpc, n = self._mpc, len(idx)
        h = self._bottom.forward(self._Xs[idx])
        H, u = self._interactive(mpc, h, self._W, self._own)
        du = None if u is None else self._top_step(u, idx, lr)
        dus = mpc.share(du, owner=self.layout_.label_holder, shape=(n, self.interactive_size))
        W = concatenate(self._W, axis=0)
        g_w, g_h = _ss_ops.matmuls([(H.T, dus), (dus, W.T)])
        cols = np.cumsum([0, *(w.shape[0] for w in self._W)])
        blocks = {p: g_h[:, cols[i] : cols[i + 1]] for i, p in enumerate(self._feature_parties)}
        tag = _ss_ops.send_each(blocks)  # step 4's opening overlaps step 5's round
        new = self._shared_opt.step(
            W.reshape(-1), g_w.reshape(-1), np.ones(W.size), lr, n, self.l2
        )
        mine = _ss_ops.receive_each(blocks, tag)
        if du is not None:
            mine = self._own_step(h, du, lr)
        if mine is None:
            raise ProtocolAbort("no embedding gradient reached this party", party=self.party_)
        grads, _ = self._bottom.backward(mine)
        local = self._local_opt["bottom"]
        local.step(self._bottom.params, grads, self._bottom.decay_mask, lr, n, self.l2)
        self._W = [
            new[a * W.shape[1] : b * W.shape[1]].reshape(b - a, -1)
            for a, b in itertools.pairwise(cols)
        ]

    def _own_step(self, h: np.ndarray, du: np.ndarray, lr: float) -> np.ndarray:
        """Steps 4-5 for ``L``'s own block and the bias, in plaintext: returns
        the gradient at ``L``'s embedding (taken before the update)."""
        own = self._own
        if own is None:
            raise ProtocolAbort("the label holder has no interactive block", party=self.party_)
        g_h = du @ own[0].T
        masks = [np.ones(own[0].shape), np.zeros(own[1].shape)]
        self._local_opt["own"].step(own, [h.T @ du, du.sum(axis=0)], masks, lr, len(du), self.l2)
        return g_h

    def _interactive(
        self, mpc: Any, h: np.ndarray, W: list[Any], own: list[np.ndarray] | None
    ) -> tuple[Any, np.ndarray | None]:
        """Steps 1-2: the feature holders' embeddings, shared and side by side,
        and ``u`` at ``L`` (None elsewhere)."""
        from sharedml.mpc import concatenate

        me, n = self.party_, h.shape[0]
        H = concatenate(
            [
                mpc.share(h if p == me else None, owner=p, shape=(n, w.shape[0]))
                for p, w in zip(self._feature_parties, W, strict=True)
            ],
            axis=1,
        )
        (theirs,) = _ss_ops.matmuls([(H, concatenate(W, axis=0))])
        summed = theirs.reveal(to=self.layout_.label_holder)
        if summed is None:
            return H, None
        if own is None:
            raise ProtocolAbort("the label holder has no interactive block", party=self.party_)
        return H, np.asarray(summed) + h @ own[0] + own[1]

    def _top_step(self, u: np.ndarray, idx: np.ndarray, lr: float) -> np.ndarray:
        """Step 3 at ``L``: the top net's forward, loss, backward and update; ``du``
        as it leaves ``L`` (through the label-DP guard)."""
        top, y = self._top, self._y
        if top is None or y is None:
            raise ProtocolAbort("the label holder has no top net or labels", party=self.party_)
        a = activate(self.activation, u)
        z = top.forward(a)
        grads, da = top.backward(output_error(z, y[idx], self.task, "exact"))
        self._local_opt["top"].step(top.params, grads, top.decay_mask, lr, len(idx), self.l2)
        return self._guard(da * activation_grad(self.activation, u, a))

    # -- scores at the label holder --------------------------------------------------------
    def _scores(self, session: Session, Xs: np.ndarray, *, validation: bool) -> np.ndarray | None:
        if validation:
            return self._outputs(self._mpc, Xs, (self._bottom, self._top), self._W, self._own)
        mpc = self._runtime(session)
        try:
            return self._outputs(
                mpc, Xs, (self.bottom_, self.top_), self._shared_weights(mpc), self.own_
            )
        finally:
            mpc.close()

    def _outputs(
        self,
        mpc: Any,
        Xs: np.ndarray,
        nets: tuple[Dense, Dense | None],
        W: list[Any],
        own: list[np.ndarray] | None,
    ) -> np.ndarray | None:
        bottom, top = nets
        _, u = self._interactive(mpc, bottom.forward(Xs), W, own)
        if u is None:
            return None
        if top is None:
            raise ProtocolAbort("the label holder has no top net", party=self.party_)
        z = top.forward(activate(self.activation, u))
        return z if z.shape[1] > 1 else z.ravel()


class SplitMLPClassifier(_SplitMLP):
    """Split vertical MLP for 0/1 labels (see the module docstring).

    Parameters: declared in :attr:`params` — the layers
    (``bottom_layer_sizes``, ``interactive_size``, ``top_layer_sizes``,
    ``activation``, also applied to the interactive layer), SGD's and the
    optimiser's as the secret-shared MLP, ``n_classes`` (above 2: labels
    0 .. n_classes - 1, a softmax output at ``L`` and probabilities of shape
    rows × n_classes from ``predict``; only ``L``'s top net changes), label DP (``label_dp_noise``,
    ``label_dp_clip``, ``label_dp_delta``; ε is reported as
    ``label_dp_epsilon_``) and the protocol's (``provider``, ``trunc``).
    ``random_state`` seeds the public shuffle only: the starting weights come
    from each party's own secret.
    """

    model_type = "SplitMLPClassifier"
    task = "classification"
    params: ClassVar[dict[str, Param]] = {**SPLIT_PARAMS, "n_classes": CLASSES_PARAM}


class SplitMLPRegressor(_SplitMLP):
    """Split vertical MLP for a real label, squared error (the parameters of
    :class:`SplitMLPClassifier`; the label is standardised at the label
    holder)."""

    model_type = "SplitMLPRegressor"
    task = "regression"
    params: ClassVar[dict[str, Param]] = SPLIT_PARAMS

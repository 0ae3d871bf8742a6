"""Plaintext references for the MLP tests: scikit-learn's MLPClassifier driven
through the same starting weights and batches as the shared learners."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.neural_network import MLPClassifier

from sharedml.learn.linear._core import batch_plan


def public_seed(random_state: int) -> bytes:
    """The shuffle seed the label holder derives from ``random_state``."""
    return hashlib.sha256(f"sharedml.linear/{random_state}".encode()).digest()[:16]


def standardised(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0)
    return (train - mean) / std, (test - mean) / std


def sklearn_mlp(
    X: np.ndarray,
    y: np.ndarray,
    layers: Sequence[Sequence[np.ndarray]],
    *,
    seed: bytes,
    epochs: int,
    batch_size: int,
    learning_rate: float,
) -> MLPClassifier:
    """MLPClassifier (relu, plain SGD, no L2) from ``layers`` on our batches
    (a softmax output when the last layer has one unit per class)."""
    hidden = tuple(W.shape[1] for W, _ in layers[:-1])
    classes = list(range(max(2, layers[-1][0].shape[1])))
    clf = MLPClassifier(
        hidden_layer_sizes=hidden,
        solver="sgd",
        learning_rate_init=learning_rate,
        momentum=0.0,
        nesterovs_momentum=False,
        alpha=0.0,
        batch_size=len(X),
        shuffle=False,
    )
    with warnings.catch_warnings():  # batch_size above a batch's rows: one step per call
        warnings.simplefilter("ignore", UserWarning)
        clf.partial_fit(X[:2], y[:2], classes=classes)  # builds the network
        for (W, b), coef, icpt in zip(layers, clf.coefs_, clf.intercepts_, strict=True):
            coef[...] = W  # in place: the optimiser holds these arrays
            icpt[...] = b
        for epoch in range(epochs):
            for idx in batch_plan(len(X), batch_size, seed, epoch):
                clf.partial_fit(X[idx], y[idx])
    return clf


def party_seed(seed: bytes, party: str) -> bytes:
    """``party``'s own secret seed in a run given ``seed`` (as the run modes derive it)."""
    return hashlib.sha256(seed + party.encode()).digest()


def split_layers(
    seed: bytes, widths: dict[str, int], interactive: int, out: int = 1
) -> list[list[np.ndarray]]:
    """The starting weights of a split MLP without bottom nets, as one MLP:
    the interactive blocks stacked in party order (each drawn from its
    party's secret seed, as ``run_in_threads(seed=...)`` derives it), a zero
    bias, then the label holder's (the first party's) top layer (``out`` units)."""
    from sharedml.learn.nn._core import init_layers

    blocks = [
        init_layers(party_seed(seed, p), "split/interactive", [w, interactive])[0][0]
        for p, w in widths.items()
    ]
    label_holder = next(iter(widths))
    top = init_layers(party_seed(seed, label_holder), "split/top", [interactive, out])[0]
    return [[np.vstack(blocks), np.zeros(interactive)], top]

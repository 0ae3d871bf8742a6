"""Vertical neural networks: one label holder, any number of feature holders.

* :class:`SSMLPClassifier`, :class:`SSMLPRegressor` — every weight, activation and gradient
  secret-shared on the MPC engine (``protocol: ss``);
* :class:`SplitMLPClassifier`, :class:`SplitMLPRegressor` — each party's own bottom net, an interactive
  layer on secret shares, the label holder's top net (``protocol: split``;
  faster, with stated leakage and optional label DP).

All are :class:`~sharedml.learn.base.VerticalModel` parts: every party calls
``fit``/``predict`` with its own columns; outputs reach the label holder only.
"""

from sharedml.learn.nn._core import plaintext_mlp
from sharedml.learn.nn.split import SplitMLPClassifier, SplitMLPRegressor
from sharedml.learn.nn.ss import SSMLPClassifier, SSMLPRegressor

__all__ = [
    "SSMLPClassifier",
    "SSMLPRegressor",
    "SplitMLPClassifier",
    "SplitMLPRegressor",
    "plaintext_mlp",
]

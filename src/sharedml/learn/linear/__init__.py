"""Vertical linear models: one label holder, any number of feature holders.

* :class:`SSLogisticRegression`, :class:`SSLinearRegression` — secret-shared
  SGD on the MPC engine (dealer or HE randomness); coefficients stay shared
  or each feature holder receives only its own.
* :class:`HELogisticRegression` — the label holder's Paillier key, no third party.

All are :class:`~sharedml.learn.base.VerticalModel` parts: every party calls
``fit``/``predict`` with its own columns; scores reach the label holder only.
"""

from sharedml.learn.linear._core import plaintext_sgd, sigmoid
from sharedml.learn.linear.he import HELogisticRegression
from sharedml.learn.linear.ss import SSLinearRegression, SSLogisticRegression

__all__ = [
    "HELogisticRegression",
    "SSLinearRegression",
    "SSLogisticRegression",
    "plaintext_sgd",
    "sigmoid",
]

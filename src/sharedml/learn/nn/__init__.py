"""Vertical neural networks: one label holder, any number of feature holders.

* :class:`SSMLPClassifier` — every weight, activation and gradient
  secret-shared on the MPC engine (``protocol: ss``).

All are :class:`~sharedml.learn.base.VerticalModel` parts: every party calls
``fit``/``predict`` with its own columns; outputs reach the label holder only.
"""

from sharedml.learn.nn._core import plaintext_mlp
from sharedml.learn.nn.ss import SSMLPClassifier

__all__ = ["SSMLPClassifier", "plaintext_mlp"]

"""How the feature holders' histograms reach the label holder: the seam
between the tree protocol and its two cryptographic backends.

The label holder holds a :class:`HistogramClient`, each feature holder a
:class:`HistogramServer`. Per tree the client sends the tree's gradients in
protected form (:meth:`begin_tree`); per level it asks for the histograms of
some nodes (:meth:`histograms`), naming each row's node slot. Both return
flat histograms of shape ``(nodes, total_bins, 2)`` (sums of g and h) to the
label holder only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from sharedml.transport.base import Channel


class HistogramClient(ABC):
    """The label holder's side."""

    @abstractmethod
    def setup(self, ch: Channel, holders: dict[str, np.ndarray], n_rows: int) -> None:
        """``holders``: each feature holder's bins per feature; ``n_rows`` rows."""

    @abstractmethod
    def begin_tree(self, g: np.ndarray, h: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Send the tree's gradients (of the sampled ``rows``); return the root
        histograms, shape ``(total_bins, 2)`` per feature holder."""

    @abstractmethod
    def histograms(self, node_of_row: np.ndarray, k: int) -> dict[str, np.ndarray]:
        """Histograms ``(k, total_bins, 2)`` of the nodes whose rows carry slots ``0..k-1``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (worker pools)."""

    def expect_trees(self, count: int) -> None:  # noqa: B027 - optional hook
        """At most ``count`` trees follow (so no work is prepared past the last)."""


class HistogramServer(ABC):
    """A feature holder's side; ``bins`` is its ``(n, F)`` bin matrix."""

    @abstractmethod
    def setup(
        self, ch: Channel, label_holder: str, bins: np.ndarray, n_bins: np.ndarray
    ) -> None: ...

    @abstractmethod
    def begin_tree(self) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (the MPC runtime)."""

    @abstractmethod
    def histograms(self, k: int) -> None:
        """Serve the histograms of ``k`` nodes (the backend says which rows)."""

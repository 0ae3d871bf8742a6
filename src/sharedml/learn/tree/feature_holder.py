"""A feature holder's role in SecureBoost training and prediction.

It bins its own columns (edges stay here), serves histogram requests through
its :class:`~sharedml.learn.tree.histograms.HistogramServer`, and, when the
label holder picks one of its splits, records ``(feature, threshold)`` under a
fresh record id and answers with the id and the side each of the node's rows
goes to. It never sees labels or plaintext gradients.
"""

from __future__ import annotations

import numpy as np

from sharedml.errors import ProtocolAbort
from sharedml.learn.tree.binning import bin_index, bins_per_feature, quantile_edges
from sharedml.learn.tree.histograms import HistogramServer
from sharedml.learn.tree.model import SplitTable
from sharedml.learn.tree.wire import (
    OP_BEGIN_TREE,
    OP_DIRECTIONS,
    OP_END,
    OP_HISTOGRAMS,
    OP_SPLIT,
    pack_bits,
    recv_cmd,
    recv_rows,
)
from sharedml.transport.base import Channel


def serve_training(
    ch: Channel,
    label_holder: str,
    server: HistogramServer,
    X: np.ndarray,
    X_val: np.ndarray | None,
    n_bins: int,
) -> SplitTable:
    """Obey the label holder's commands until it ends training; return this
    party's split table (records of the kept trees only)."""
    edges = quantile_edges(X, n_bins)
    bins = bin_index(X, edges)
    nb = bins_per_feature(edges)
    ch.send(label_holder, "meta", nb)
    server.setup(ch, label_holder, bins, nb)
    table = SplitTable()
    in_tree = False
    while True:
        op, arg = recv_cmd(ch, label_holder)
        if op == OP_BEGIN_TREE:
            server.begin_tree()
            in_tree = True
        elif op == OP_HISTOGRAMS and in_tree:
            server.histograms(arg)
        elif op == OP_SPLIT and in_tree:
            _split(ch, label_holder, arg, bins, edges, table)
        elif op == OP_DIRECTIONS:
            data = X if arg == 0 else X_val
            if data is None:
                raise ProtocolAbort("directions asked for absent validation rows", party=ch.party)
            ids = np.asarray(ch.recv(label_holder, "ids"), dtype=np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= len(table)):
                raise ProtocolAbort("unknown split record id", party=ch.party, step="ids")
            ch.send(label_holder, "dirs", pack_bits(table.directions(data, ids)))
        elif op == OP_END:
            if not 0 <= arg <= len(table):
                raise ProtocolAbort("kept-record count out of range", party=ch.party)
            server.close()
            return SplitTable(table.features[:arg], table.thresholds[:arg])
        else:
            raise ProtocolAbort(
                f"command {op} not allowed here", party=ch.party, step="secureboost/cmd"
            )


def _split(
    ch: Channel,
    frm: str,
    k: int,
    bins: np.ndarray,
    edges: list[np.ndarray],
    table: SplitTable,
) -> None:
    node_of_row = recv_rows(ch, frm, len(bins))
    which = np.asarray(ch.recv(frm, "which"), dtype=np.int64)
    if which.shape != (k, 2):
        raise ProtocolAbort("split list of the wrong shape", party=ch.party, step="which")
    ids = np.empty(k, dtype=np.int64)
    left = np.zeros(len(bins), dtype=bool)
    for slot, (f, b) in enumerate(which.tolist()):
        if not (0 <= f < len(edges) and 0 <= b < len(edges[f])):
            raise ProtocolAbort("split names a bin that does not exist", party=ch.party)
        ids[slot] = table.add(f, float(edges[f][b]))
        at = node_of_row == slot
        left[at] = bins[at, f] <= b
    ch.send(frm, "ids", ids)
    ch.send(frm, "dirs", pack_bits(left[node_of_row >= 0]))


def serve_prediction(ch: Channel, label_holder: str, sides: np.ndarray) -> None:
    """Send the side of every row at every split this party owns (``(splits, rows)``
    booleans, :meth:`SplitTable.directions`), bit-packed."""
    ch.send(label_holder, "dirs", pack_bits(sides))

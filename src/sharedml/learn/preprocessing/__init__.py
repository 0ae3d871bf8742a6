"""Preprocessing on aligned data: split, scaling, filling, binning, one-hot, WOE/IV.

Each module says which party computes what and what crosses the wire.
"""

from sharedml.learn.preprocessing.binning import apply_bins, bin_edges, one_hot
from sharedml.learn.preprocessing.impute import Filler
from sharedml.learn.preprocessing.scaling import Scaler
from sharedml.learn.preprocessing.secure_sum import SecureSummer
from sharedml.learn.preprocessing.split import ordered_split, shared_split
from sharedml.learn.preprocessing.woe import WoeResult, vertical_woe, woe_iv

__all__ = [
    "Filler",
    "Scaler",
    "SecureSummer",
    "WoeResult",
    "apply_bins",
    "bin_edges",
    "one_hot",
    "ordered_split",
    "shared_split",
    "vertical_woe",
    "woe_iv",
]

"""Statistics: per-party describe; joint correlation and VIF under MPC."""

from sharedml.learn.stats.correlation import joint_correlation, standardise, vif
from sharedml.learn.stats.describe import describe

__all__ = ["describe", "joint_correlation", "standardise", "vif"]

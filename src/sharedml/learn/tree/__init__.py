"""Vertical tree models: SecureBoost over HE or secret sharing."""

from sharedml.learn.tree.secureboost import SecureBoostClassifier, SecureBoostRegressor

__all__ = ["SecureBoostClassifier", "SecureBoostRegressor"]

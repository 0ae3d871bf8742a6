"""Model optimisation for vertical models (8.1.2-3): k-fold cross-validation
and hyper-parameter search, every trial a full shared training on the same
aligned rows; only metrics, never a row's score, reach the other parties.

* :func:`cross_validate` — scikit-learn's fold assignment, per-fold metrics;
* :func:`tune` — grid, random or TPE (Optuna) over a declared space, a budget
  in trials or seconds, median pruning.
"""

from sharedml.learn.selection.cv import CVResult, cross_validate
from sharedml.learn.selection.tune import TuneResult, tune

__all__ = ["CVResult", "TuneResult", "cross_validate", "tune"]

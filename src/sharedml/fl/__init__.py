"""Horizontal federated learning: parties hold the same columns for different rows.

* :mod:`sharedml.fl.quantize` — fixed-point encoding of float updates on
  Z_2^64 or Z_2^32 (when the bound allows) with a stated error bound;
* :mod:`sharedml.fl.secagg` — dropout-tolerant secure aggregation
  (Bonawitz et al.), written once against the Channel;
* :mod:`sharedml.fl.fedavg` — FedAvg / FedProx over secure aggregation, for
  any :class:`~sharedml.fl.learner.LocalLearner`: :mod:`sharedml.fl.linear`
  (numpy) and :mod:`sharedml.fl.mlp` (PyTorch, the ``torch`` extra);
* :mod:`sharedml.fl.dp` — client-level DP (clipping, Gaussian noise, ε from
  ``dp_accounting``) as wrappers around the aggregation;
* :mod:`sharedml.fl.metrics` — evaluation metrics from secure sums, and
  :mod:`sharedml.fl.evaluate` — each party scores its own rows, one secure
  sum gives everyone the pooled metrics;
* :mod:`sharedml.fl.gbdt` — federated histogram gradient boosting.
"""

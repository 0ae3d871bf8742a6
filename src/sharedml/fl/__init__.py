"""Horizontal federated learning: parties hold the same columns for different rows.

* :mod:`sharedml.fl.quantize` — fixed-point encoding of float updates on
  Z_2^64 with a stated error bound;
* :mod:`sharedml.fl.secagg` — dropout-tolerant secure aggregation
  (Bonawitz et al.), written once against the Channel.
"""

"""Horizontal evaluation: each party scores its own rows; only summed statistics meet.

1. Each data party computes, on its own rows, the sums of
   :mod:`sharedml.fl.metrics` (score histograms per class, log-loss, counts;
   or error sums for regression) from its labels and its own model's scores.
2. The sums are added by one round of secure aggregation.
3. The aggregator reads the metrics off the total and, if asked, sends them
   to every party.

Reveals: to the aggregator (and to every party when ``share`` is set) the
pooled metrics and the pooled statistics they are read from (what a ROC
curve over everyone's rows shows); never a party's rows, labels, scores or
its own statistics. Security model: that of :mod:`sharedml.fl.secagg`.
"""

from __future__ import annotations

import numpy as np

from sharedml.errors import ConfigError, DataError
from sharedml.fl import metrics as M
from sharedml.fl.figures import receive_figures, send_figures
from sharedml.fl.secagg import SecAggClient, SecAggConfig, SecAggServer
from sharedml.session import Session

TASKS = ("classification", "regression")
RESULT = "evaluate/metrics"


def _size(task: str) -> int:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}", remedy=f"use one of {TASKS}")
    return 2 * M.DEFAULT_BINS + 4 if task == "classification" else 5


def evaluate_as_server(
    session: Session, config: SecAggConfig, task: str, round_id: int = 0, share: bool = True
) -> dict[str, float]:
    """The pooled metrics of the clients' rows (and, with ``share``, send them back)."""
    res = SecAggServer(session, config).aggregate(round_id, list(config.clients), _size(task))
    scores = (M.classification_metrics if task == "classification" else M.regression_metrics)(
        res.total
    )
    scores["parties"] = float(len(res.survivors))
    if share:
        send_figures(session, config.clients, RESULT, scores)
    return scores


def evaluate_as_client(
    session: Session,
    config: SecAggConfig,
    task: str,
    y: np.ndarray,
    scores: np.ndarray,
    round_id: int = 0,
    share: bool = True,
) -> dict[str, float] | None:
    """Submit this party's sums; with ``share``, return the pooled metrics."""
    try:
        sums = (
            M.classification_sums(y, scores) if task == "classification"
            else M.regression_sums(y, scores)
        )  # fmt: skip
    except DataError as exc:
        raise DataError(
            exc.message, party=session.party, step="evaluate", remedy=exc.remedy
        ) from None
    if sums.size != _size(task):
        raise DataError(f"{sums.size} statistics, expected {_size(task)}", party=session.party)
    SecAggClient(session, config).submit(round_id, sums)
    if not share:
        return None
    return receive_figures(session, config.server, RESULT)

"""Sample alignment: PSI on a frame's id columns, then its rows in the agreed order.

Every party calls :func:`align_rows` with its own frame; each receiver gets
back its frame restricted to the intersection, rows in the order all
receivers share, so row ``r`` of every aligned frame is the same entity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sharedml.errors import DataError
from sharedml.psi.api import PsiResult, psi_digests
from sharedml.psi.ecdh import DEFAULT_BATCH
from sharedml.psi.keys import KeyRules, digest_keys
from sharedml.psi.rows import as_void
from sharedml.session import Session


def _check_unique(digests: np.ndarray, party: str, columns: Sequence[str]) -> None:
    view = as_void(digests)
    _, first, counts = np.unique(view, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup_keys = view[first[counts > 1]]
        rows = np.flatnonzero(np.isin(view, dup_keys))
        shown = ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else "")
        raise DataError(
            f"{len(rows)} rows share an id after normalisation (rows {shown}) in id "
            f"columns {list(columns)}; alignment needs one row per id",
            party=party,
            step="psi",
            remedy="deduplicate the dataset or add a column to the key",
        )


def align_rows(
    session: Session,
    frame: pd.DataFrame,
    id_columns: Sequence[str],
    *,
    rules: KeyRules | None = None,
    receivers: Sequence[str] | None = None,
    batch: int = DEFAULT_BATCH,
    workers: int | None = None,
    processes: bool = False,
    protocol: str = "auto",
) -> tuple[pd.DataFrame | None, PsiResult]:
    """This party's rows of the intersection, in the order every receiver agrees on.

    Returns ``(aligned frame, result)``; the frame is ``None`` at a party that
    is not a receiver. Duplicate ids are a :class:`DataError` (a set
    intersection with :func:`psi_digests` accepts them). ``protocol`` is as in
    :func:`psi_digests`.
    """
    digests = digest_keys(frame, list(id_columns), rules)
    _check_unique(digests, session.party, id_columns)
    result = psi_digests(
        session,
        digests,
        receivers=receivers,
        batch=batch,
        workers=workers,
        processes=processes,
        protocol=protocol,
    )
    if result.rows is None:
        return None, result
    # The protocol's order follows this run's blinding keys, so it changes from
    # run to run; re-sort by the key digests, which every receiver holds alike,
    # so that a seeded split picks the same rows in every run of a job.
    rows = np.asarray(result.rows)
    keys = as_void(digests[rows])
    rows = rows[np.argsort(keys, kind="stable")]
    return frame.iloc[rows].reset_index(drop=True), result

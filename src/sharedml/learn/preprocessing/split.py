"""A train/test split that is identical at every party.

Protocol (rows already aligned by PSI, so row ``r`` is the same entity everywhere):

1. Every party sends its row count; a mismatch aborts (the data are not aligned).
2. Without stratification every party draws the same permutation from the
   job's public ``seed`` and takes the first ``round(test_size · n)`` rows as
   the test set: no message carries anything but the row count.
3. With stratification only the label holder can compute the split. It runs
   scikit-learn's stratified shuffle split on its labels with the shared
   seed and sends the others the row assignment (one byte per row: 1 = test).
   A continuous label (a regression's: numbers with more than
   ``CONTINUOUS_ABOVE`` distinct values) is stratified on its deciles; a class
   too small to stratify is refused with a clear error.

Ordered instead of random (:func:`ordered_split`, the ``split`` step's
``by: id``): every party orders its rows by its own id column — as numbers
when every id is one, else as text — and the last ``round(test_size · n)``
rows are the test set ("train on the first 70% of the ids, score the rest",
as a model is used on later customers). After PSI the parties hold the same
ids, so they compute the same split; each sends the SHA-256 of its
assignment and a difference aborts.

Reveals: the row counts and the split itself. A stratified assignment is a
function of the labels: it reveals that the test rows hold the labels' class
counts in proportion (e.g. ``round(test_size · n_pos)`` positives), no label
of any row. Semi-honest; reference: scikit-learn ``StratifiedShuffleSplit``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from sharedml.errors import ConfigError, DataError, ProtocolAbort
from sharedml.session import Session


def _check_counts(session: Session, n: int) -> None:
    counts = session.channel.all_gather("split/rows", np.array([n], dtype=np.int64))
    sizes = {p: int(np.asarray(v)[0]) for p, v in counts.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(
            f"parties hold different row counts {sizes}: the data are not aligned",
            party=session.party,
            step="split",
            remedy="run the psi step before split",
        )


#: A numeric label with more distinct values than this is continuous: stratified on deciles.
CONTINUOUS_ABOVE = 50


def _strata(labels: np.ndarray, party: str) -> np.ndarray:
    """What to stratify on: the classes, or a continuous label's deciles."""
    values, counts = np.unique(labels.astype(str) if labels.dtype == object else labels,
                               return_counts=True)
    numeric = np.issubdtype(labels.dtype, np.number)
    if numeric and len(values) > CONTINUOUS_ABOVE:
        edges = np.unique(np.quantile(labels.astype(float), np.linspace(0, 1, 11)[1:-1]))
        return np.digitize(labels.astype(float), edges)
    if counts.min(initial=2) < 2:
        raise DataError(
            f"the label has a class with a single row ({len(values)} classes): it cannot be "
            "stratified", party=party, step="split",
            remedy="set stratify: false, or merge the rare classes",
        )
    return labels


def shared_split(
    session: Session,
    n_rows: int,
    *,
    test_size: float = 0.3,
    seed: int = 42,
    label_holder: str | None = None,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices, the same at every party (see module docstring).

    Pass ``label_holder`` to stratify; that party passes its ``labels``.
    """
    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must be in (0, 1), got {test_size}", step="split")
    _check_counts(session, n_rows)
    if n_rows < 2:
        raise DataError(
            f"{n_rows} aligned row(s) cannot be split into train and test", party=session.party,
            step="split", remedy="check the parties' ids overlap (psi's intersection) or give "
            "them more rows",
        )
    if label_holder is None:
        perm = np.random.default_rng(seed).permutation(n_rows)
        n_test = round(test_size * n_rows)
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])
    if session.party == label_holder:
        if labels is None or len(labels) != n_rows:
            raise DataError(
                "the label holder must pass one label per row to stratify the split",
                party=session.party,
                step="split",
            )
        from sklearn.model_selection import train_test_split  # not at import: scoring jobs

        try:
            _, test = train_test_split(np.arange(n_rows), test_size=test_size,
                                       random_state=seed, stratify=_strata(labels, session.party))
        except ValueError as exc:  # e.g. fewer test rows than classes
            raise DataError(
                f"the split cannot be stratified on this label ({type(exc).__name__})",
                party=session.party, step="split",
                remedy="set stratify: false, or a test_size that leaves each class rows",
            ) from None
        assign = np.zeros(n_rows, dtype=np.uint8)
        assign[test] = 1
        for p in session.others:
            session.channel.send(p, "split/assign", assign)
    else:
        got = session.channel.recv(label_holder, "split/assign")
        if not isinstance(got, np.ndarray) or got.shape != (n_rows,) or got.max(initial=0) > 1:
            raise ProtocolAbort("malformed split assignment", party=label_holder, step="split")
        assign = got
    return np.flatnonzero(assign == 0), np.flatnonzero(assign == 1)


def ordered_split(session: Session, ids: np.ndarray, *, test_size: float = 0.3
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices by id order: the last ``round(test_size · n)`` ids
    (numeric order when every id is a number, else text order) are the test rows."""
    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must be in (0, 1), got {test_size}", step="split")
    n_rows = len(ids)
    _check_counts(session, n_rows)
    if n_rows < 2:
        raise DataError(f"{n_rows} aligned row(s) cannot be split into train and test",
                        party=session.party, step="split",
                        remedy="check the parties' ids overlap or give them more rows")
    text = np.asarray([str(i).strip() for i in ids], dtype=object)
    try:
        keys: np.ndarray = np.asarray(text.astype(np.float64))
    except ValueError:
        keys = text
    order = np.argsort(keys, kind="stable")
    n_test = round(test_size * n_rows)
    assign = np.zeros(n_rows, dtype=np.uint8)
    assign[order[n_rows - n_test:]] = 1
    digest = np.frombuffer(hashlib.sha256(assign.tobytes()).digest(), dtype=np.uint8)
    got = session.channel.all_gather("split/ordered", digest)
    differ = sorted(p for p, d in got.items() if bytes(np.asarray(d)) != digest.tobytes())
    if differ:
        raise DataError(f"parties {differ} ordered the ids differently: their id columns "
                        "do not hold the same values", party=session.party, step="split",
                        remedy="align the rows with psi first, or split by: random")
    return np.flatnonzero(assign == 0), np.flatnonzero(assign == 1)

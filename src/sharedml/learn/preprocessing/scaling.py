"""Standard and min-max scaling, local (vertical data) or across parties (horizontal data).

Vertical data: every party holds whole columns, so it fits its scaler on its
own columns and nothing crosses the wire (scikit-learn does the work).

Horizontal data (:meth:`Scaler.fit_horizontal`): every party holds some rows
of the same columns; the fitted centre and scale are the ones scikit-learn
would fit on the pooled rows. Steps, every party in lock step:

1. Input check (one round): each party sends every other a status — fine,
   or why its rows cannot be fitted on (no rows; NaN or infinity in named
   columns; values too large for the fixed-point encoding). If any party's
   status is bad, every party raises the same :class:`DataError` naming
   that party, so no party is left waiting in a protocol its peer never
   entered.
2. Standard scaling: secure sums (:mod:`.secure_sum`). ``[Σx, n]`` gives
   the global mean; then each party adds ``Σ(x − mean)² / n`` (divided
   locally by the now public total ``n``, so the masked values stay small
   on the ring) and the total is the variance — once coarsely, then again
   with every term multiplied by a public power of two that brings the
   total near ``2^30``, so small variances keep their relative precision.
3. Min-max scaling: each party secret-shares its column maxima and negated
   minima (:meth:`sharedml.mpc.MPC.share`), the parties compute the
   element-wise maximum of the shared stack with secure comparisons
   (:func:`sharedml.mpc.functions.max`: a tree of ``⌈log2 parties⌉``
   comparisons on 2·columns elements) and open only the result. Needs an
   MPC runtime over the parties that hold rows (``mpc``).

Reveals: to every party holding rows, per column the global mean and
standard deviation and the total row count (standard), or the global minimum
and maximum (min-max) — no party's own sums, extremes or row count; in step 1
only a bad party's reason (which is sent only when a fit cannot go on). The
randomness provider of the MPC runtime (a dealer) sees the shapes of the
requests and nothing else.

Security model: semi-honest. Secure sums: any number of colluding parties
learn no more than their own data and the totals imply about two honest
parties. Min-max: additive secret sharing; a dealer must not collude with a
data party (with HE-made randomness, two parties and no third).

Precision: min and max are exact up to the fixed-point encoding (half of
``2^-frac_bits`` of the MPC runtime: 3.0e-8 at :data:`MINMAX_FRAC_BITS`, the
precision the ``scale`` job step gives it); the comparisons are exact for
values below ``2^(62 − frac_bits)`` in magnitude (2.7e11 at 24 bits), which
step 1 enforces. Sums are encoded at 20 fractional bits; the variance is
rescaled to keep about 15 significant digits.

References: Bonawitz et al., CCS 2017 (masked sums); ABY (Demmler et al.,
NDSS 2015) and CrypTen (Knott et al., NeurIPS 2021) for the comparisons.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.errors import ConfigError, DataError, NotFittedError, ProtocolAbort
from sharedml.learn.preprocessing.secure_sum import SecureSummer
from sharedml.session import Session

if TYPE_CHECKING:
    from sharedml.mpc import MPC

Method = Literal["standard", "minmax"]
_CHECK_TAG = "scale/check"
#: Fractional bits for min-max's MPC runtime: 3e-8 resolution, values up to 2.7e11.
MINMAX_FRAC_BITS = 24
#: Fractional bits of the secure sums (standard scaling).
_SUM_FRAC_BITS = 20


class Scaler:
    """``(x - center_) / scale_`` per column; fitted locally or jointly."""

    def __init__(self, method: Method = "standard") -> None:
        if method not in ("standard", "minmax"):
            raise ConfigError(f"scaling method must be 'standard' or 'minmax', got {method!r}")
        self.method = method

    def fit(self, x: np.ndarray) -> Scaler:
        """Local fit (vertical data): scikit-learn's scalers on this party's columns."""
        from sklearn.preprocessing import MinMaxScaler, StandardScaler

        x = np.asarray(x, dtype=np.float64)
        if self.method == "standard":
            sk = StandardScaler().fit(x)
            self.center_, self.scale_ = sk.mean_, sk.scale_
        else:
            mm = MinMaxScaler().fit(x)
            self.center_ = mm.data_min_
            self.scale_ = np.where(mm.data_range_ == 0, 1.0, mm.data_range_)
        return self

    def fit_horizontal(
        self,
        session: Session,
        x: np.ndarray,
        mpc: MPC | Callable[[], MPC] | None = None,
        *,
        columns: Sequence[str] | None = None,
        step: str = "scale",
    ) -> Scaler:
        """Joint fit over every party's rows (see module docstring).

        ``session`` spans the parties that hold rows (standard scaling sums
        over all its peers). ``mpc`` (min-max only) is an open runtime over
        those parties, or a function that opens one: it is then called only
        after the input check passed and closed after the maximum. ``columns``
        name the columns in error messages; ``step`` is the step they name.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise DataError(f"expected a 2-d array of rows, got shape {x.shape}",
                            party=session.party, step=step)
        runtime: MPC | Callable[[], MPC] | None = None if self.method == "standard" else mpc
        if self.method == "minmax" and runtime is None:
            raise ConfigError(
                "horizontal min-max scaling needs an MPC runtime for the secure maximum",
                party=session.party,
                step=step,
                remedy="pass mpc=MPC(session, provider) or use method 'standard'",
            )
        parties = _computing_parties(session, runtime)
        names = list(columns) if columns is not None else [f"#{i}" for i in range(x.shape[1])]
        problem = _problem(x, names, self.method, session.frac_bits, len(parties))
        check_inputs(session, parties, problem, x.shape[1], step=step)
        if runtime is None:  # standard
            summer = SecureSummer(session, frac_bits=_SUM_FRAC_BITS)
            tot = summer.sum(np.concatenate([x.sum(axis=0), [len(x)]]))
            n = tot[-1]
            mean = tot[:-1] / n
            var = _pooled_variance(summer, x, mean, n)
            std = np.sqrt(var)
            self.center_, self.scale_ = mean, np.where(std == 0, 1.0, std)
            return self
        lo, hi = _joint_extremes(runtime, x)
        rng = hi - lo
        self.center_, self.scale_ = lo, np.where(rng == 0, 1.0, rng)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "center_"):
            raise NotFittedError("Scaler.transform before fit")
        return (np.asarray(x, dtype=np.float64) - self.center_) / self.scale_



def _pooled_variance(summer: SecureSummer, x: np.ndarray, mean: np.ndarray, n: float) -> np.ndarray:
    """Step 2's variance: a coarse sum, then the same sum rescaled by a public power of two.

    ``Σ(x − mean)² / n`` at 20 fractional bits is exact to about 1e-6 absolute,
    which is poor for small variances; the second sum multiplies each term by
    ``2^30 / coarse`` (rounded to a power of two), so the total sits near
    ``2^30`` and its rounding error is about ``2^-50`` of the variance. The
    factor follows from the coarse total, which every party already learns.
    """
    ss = ((x - mean) ** 2).sum(axis=0) / n
    coarse = np.maximum(summer.sum(ss), 0.0)
    floor = summer.fp.ulp
    factor = np.exp2(30 - np.ceil(np.log2(np.maximum(coarse, floor))))
    return np.maximum(summer.sum(ss * factor), 0.0) / factor


def _computing_parties(session: Session, mpc: object) -> tuple[str, ...]:
    """The parties holding rows: an open runtime's, else every peer of the session."""
    from sharedml.mpc import MPC

    if isinstance(mpc, MPC):
        return mpc.parties
    return session.peers


def _problem(
    x: np.ndarray, columns: Sequence[str], method: str, frac_bits: int, n_parties: int
) -> str | None:
    """Why this party's rows cannot be fitted on, or None."""
    if len(x) == 0:
        return "has no rows to fit on"
    bad = ~np.isfinite(x).all(axis=0)
    if not bad.any():
        if method == "minmax":
            # Half the MPC runtime's range, so the difference of two values stays comparable.
            limit = FixedPoint(frac_bits).limit / 2
            big = (np.abs(x) >= limit).any(axis=0)
        else:
            # Every party's column sum below 1/n of the sum's range: the total fits.
            limit = FixedPoint(_SUM_FRAC_BITS).limit / n_parties
            big = np.abs(x).sum(axis=0) >= limit
        if not big.any():
            return None
        names = [columns[int(i)] for i in np.flatnonzero(big)]
        return f"has values too large for the fixed-point encoding (over {limit:g}) in {names[:10]}"
    names = [columns[int(i)] for i in np.flatnonzero(bad)]
    return f"has NaN or infinite values in columns {names[:10]}"


def check_inputs(
    session: Session, parties: Sequence[str], problem: str | None, width: int, *, step: str
) -> None:
    """Step 1 of the module docstring: exchange each party's ``problem`` (None: fine) and
    feature count; every party raises the same error, naming the first bad party."""
    mine: dict[str, object] = {"problem": problem, "columns": width}
    others = [p for p in parties if p != session.party]
    for p in others:
        session.channel.send(p, _CHECK_TAG, json.dumps(mine).encode())
    statuses: dict[str, dict[str, object]] = {session.party: mine}
    for p in others:
        try:
            got = json.loads(bytes(session.channel.recv(p, _CHECK_TAG)))
        except (ValueError, TypeError):
            got = None
        if not isinstance(got, dict):
            raise ProtocolAbort("malformed input status", party=p, step=step)
        statuses[p] = got
    for p in parties:
        if statuses[p].get("problem"):
            raise DataError(
                f"party {p!r} {statuses[p]['problem']}",
                party=p,
                step=step,
                remedy="give every party rows (or leave the empty one out of the job); fill "
                "or drop missing values before scaling (a 'fill' step); rescale huge values",
            )
    widths = {p: statuses[p].get("columns") for p in parties}
    if len(set(widths.values())) > 1:
        raise DataError(
            f"parties hold different numbers of feature columns: {widths}",
            party=session.party,
            step=step,
            remedy="give every party the same feature columns",
        )


def _joint_extremes(
    mpc: MPC | Callable[[], MPC], x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3 of the module docstring: the global column minima and maxima."""
    from sharedml.mpc import MPC

    if isinstance(mpc, MPC):
        return _extremes_under(mpc, x)
    if not callable(mpc):
        raise ConfigError("mpc must be a sharedml.mpc.MPC runtime or a function opening one")
    runtime = mpc()
    if not isinstance(runtime, MPC):
        raise ConfigError("mpc() must return a sharedml.mpc.MPC runtime")
    with runtime:
        return _extremes_under(runtime, x)


def _extremes_under(mpc: MPC, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sharedml.mpc import functions, stack

    local = np.concatenate([x.max(axis=0), -x.min(axis=0)])
    shared = [mpc.share(local if p == mpc.party else None, owner=p) for p in mpc.parties]
    top = functions.max(stack(shared, axis=0), axis=0)
    out = top.reveal()
    if out is None:  # reveal() without ``to`` opens to every party
        raise ProtocolAbort("secure maximum was not revealed", party=mpc.party, step="scale")
    d = x.shape[1]
    return -out[d:], out[:d]

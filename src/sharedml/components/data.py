"""Job steps for the data: ``psi``, ``split``, ``scale``, ``fill``, ``binning``, ``onehot``, ``woe``.

Each data party's frame lives in ``ctx.state`` and never leaves its process:

* ``psi`` loads the party's dataset through the node's validating loader (if
  ``ctx.state["data"]`` is not there yet), aligns rows with the other data
  parties by ECDH-PSI (:mod:`sharedml.psi`) and keeps the aligned frame in
  ``ctx.state["data"]``; row ``r`` is the same entity at every party.
* ``split`` writes ``ctx.state["train"]`` / ``["test"]``, the same rows at every
  party, stratified on the label holder's label without revealing it
  (:mod:`sharedml.learn.preprocessing.split`).
* ``scale`` and ``fill`` fit on the training rows and transform train and test
  (or the whole frame before a split): locally for vertical data, jointly for
  horizontal data (secure sums; min-max scaling's extremes under MPC with the
  job's dealer). Horizontal data needs no alignment: with no earlier step,
  they load the party's dataset themselves.
* ``binning`` replaces feature values by bin indices (edges from the training rows).
* ``onehot`` replaces categorical columns by ``col=value`` indicator columns
  (categories from the training rows, or declared in the job spec).
* ``woe`` computes WOE/IV of every feature with the label holder's labels
  Paillier-encrypted (:mod:`sharedml.learn.preprocessing.woe`).

Helper parties of the job (a dealer) hold no data: these steps talk only to
the parties that have a dataset entry in the job spec, except that horizontal
min-max scaling asks the dealer for correlated randomness.

Reveals: what each protocol's docstring says; as metrics only sizes, counts
and (``woe``, at the label holder) information values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from sharedml.components.base import Component, Params, StepContext, StepResult
from sharedml.errors import ConfigError, DataError
from sharedml.session import Session
from sharedml.transport.base import Channel
from sharedml.transport.codec import Value

if TYPE_CHECKING:
    from sharedml.mpc import MPC


class _PartiesOnly(Channel):
    """A view of a channel restricted to some of its peers (the data parties)."""

    def __init__(self, inner: Channel, peers: tuple[str, ...]) -> None:
        super().__init__(inner.party, peers, inner.job, inner.timeout)
        self._inner = inner

    def _send(self, to: str, tag: str, value: Value) -> None:
        self._inner._send(to, tag, value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        return self._inner._recv(frm, tag, timeout)


def data_session(
    ctx: StepContext, helpers: tuple[str, ...] = (), frac_bits: int | None = None
) -> Session:
    """The step's session over the data parties only (and the given ``helpers``)."""
    s = ctx.session
    peers = tuple(p for p in s.peers if p in ctx.parties or p in helpers)
    return Session(s.party, peers, _PartiesOnly(s.channel, peers),
                   frac_bits=s.frac_bits if frac_bits is None else frac_bits,
                   seed=s.seed, extras=s.extras)


def _require(ctx: StepContext, key: str) -> pd.DataFrame:
    frame = ctx.state.get(key)
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(
            f"no {key!r} data at this party for step {ctx.step_id!r}",
            party=ctx.party.name,
            step=ctx.step_id,
            remedy="run psi (and split) before this step",
        )
    return frame


def feature_columns(ctx: StepContext, frame: pd.DataFrame) -> list[str]:
    """Numeric columns other than ids and the label."""
    skip = set(ctx.party.id_columns) | ({ctx.party.label} if ctx.party.label else set())
    return [c for c in frame.columns
            if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]


class PsiParams(Params):
    key: str | list[str] | None = Field(None, description="id column(s); default: the party's")
    receivers: Literal["all"] | list[str] = "all"
    strip: bool = True
    casefold: bool = False
    nfc: bool = True
    workers: int | None = Field(None, ge=0, le=64)
    protocol: Literal["auto", "kkrt", "ecdh"] = Field(
        "auto", description="kkrt (OT-based, two parties), ecdh (Curve25519, any number); "
        "auto: kkrt for two parties")


class PsiStep(Component):
    """Align rows across the data parties by PSI on their ids (KKRT or ECDH)."""

    name = "psi"
    params = PsiParams
    summary = "PSI (OT-based KKRT for two parties, ECDH on Curve25519 for more); rows in a shared order"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.node.datasets import load_frame
        from sharedml.psi import KeyRules, align_rows

        ids = ([params.key] if isinstance(params.key, str) else params.key) or list(
            ctx.party.id_columns)
        frame = ctx.state.get("data")
        if frame is None:
            if ctx.party.dataset is None:
                raise ConfigError("this party has no dataset to align", party=ctx.party.name,
                                  step=ctx.step_id, remedy="give it a dataset in the job spec")
            frame = load_frame(ctx.party.dataset, ids, ctx.party.label, party=ctx.party.name)
        rules = KeyRules(strip=params.strip, casefold=params.casefold, nfc=params.nfc)
        receivers = None if params.receivers == "all" else params.receivers
        ctx.progress(0.0, f"PSI on {len(frame)} rows")
        aligned, result = align_rows(data_session(ctx), frame, ids, rules=rules,
                                     receivers=receivers, workers=params.workers,
                                     protocol=params.protocol)
        ctx.state["data"] = aligned
        metrics: dict[str, Any] = {"set_sizes": result.set_sizes}
        if result.size is not None:
            metrics["intersection"] = result.size
        return StepResult(metrics=metrics)


class SplitParams(Params):
    test_size: float = Field(0.3, gt=0.0, lt=1.0)
    seed: int = 42
    stratify: bool | str = Field(True, description="true or the label's name: stratify on it")
    layout: Literal["vertical", "horizontal"] = "vertical"


class SplitStep(Component):
    """Train/test rows identical at every party, stratified at the label holder.

    Vertical layout (aligned rows): the same rows go to train and test at every
    party; a stratified split is decided by the label holder and sent as the
    row assignment only (:mod:`sharedml.learn.preprocessing.split`).
    Horizontal layout (each party holds its own rows of the same columns):
    each party splits its own rows with the job's seed, stratified on its own
    labels; nothing is sent, so nothing is revealed.
    """

    name = "split"
    params = SplitParams
    summary = "shared-seed split; stratified split sent as the row assignment only"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import shared_split

        if params.layout == "horizontal":
            return _split_own_rows(ctx, params)
        frame = _require(ctx, "data")
        holder = ctx.label_holder if params.stratify else None
        if isinstance(params.stratify, str) and holder is not None:
            label = ctx.parties[holder].label
            if params.stratify != label:
                raise ConfigError(f"stratify names {params.stratify!r} but the label is {label!r}",
                                  party=ctx.party.name, step=ctx.step_id)
        labels = None
        if holder == ctx.party.name and ctx.party.label:
            labels = frame[ctx.party.label].to_numpy()
        train, test = shared_split(data_session(ctx), len(frame), test_size=params.test_size,
                                   seed=params.seed, label_holder=holder, labels=labels)
        ctx.state["train"] = frame.iloc[train].reset_index(drop=True)
        ctx.state["test"] = frame.iloc[test].reset_index(drop=True)
        return StepResult(metrics={"train_rows": len(train), "test_rows": len(test)})


def _split_own_rows(ctx: StepContext, params: Any) -> StepResult:
    """The horizontal split: this party's rows only, seeded, stratified on its own label."""
    from sklearn.model_selection import train_test_split

    frame, _ = _targets(ctx, "horizontal")
    label = ctx.party.label if params.stratify else None
    if isinstance(params.stratify, str) and params.stratify != label:
        raise ConfigError(f"stratify names {params.stratify!r} but the label is {label!r}",
                          party=ctx.party.name, step=ctx.step_id)
    rows = np.arange(len(frame))
    if len(rows) < 2:
        raise DataError(f"{len(rows)} rows cannot be split into train and test",
                        party=ctx.party.name, step=ctx.step_id,
                        remedy="give this party more rows or leave out the split")
    strata = frame[label].to_numpy() if label else None
    try:
        train, test = train_test_split(rows, test_size=params.test_size,
                                       random_state=params.seed, stratify=strata)
    except ValueError as exc:  # e.g. a class with a single row cannot be stratified
        raise DataError(f"cannot split this party's rows: {exc}", party=ctx.party.name,
                        step=ctx.step_id, remedy="set stratify: false") from None
    ctx.state["train"] = frame.iloc[np.sort(train)].reset_index(drop=True)
    ctx.state["test"] = frame.iloc[np.sort(test)].reset_index(drop=True)
    return StepResult(metrics={"train_rows": len(train), "test_rows": len(test)})


def _targets(ctx: StepContext, layout: str = "vertical") -> tuple[pd.DataFrame, list[str]]:
    """The frame to fit on and the state keys to transform.

    Horizontal data needs no alignment: if no earlier step left a frame, the
    party's dataset is loaded here (validated as ``psi`` does)."""
    if "train" in ctx.state:
        keys = [k for k in ("train", "test") if isinstance(ctx.state.get(k), pd.DataFrame)]
        return ctx.state["train"], keys
    if layout == "horizontal" and "data" not in ctx.state and ctx.party.dataset is not None:
        from sharedml.node.datasets import load_frame

        frame = load_frame(ctx.party.dataset, list(ctx.party.id_columns), ctx.party.label,
                           party=ctx.party.name)
        if frame.empty:  # no rows, no types: read the columns as numbers so the schema
            # check compares names and the fit reports the empty party by name
            skip = set(ctx.party.id_columns)
            frame = frame.astype({c: np.float64 for c in frame.columns if c not in skip})
        ctx.state["data"] = frame
    return _require(ctx, "data"), ["data"]


class _Fitted(Protocol):
    """A Scaler or Filler: fitted on local rows (its joint fit is passed separately)."""

    def fit(self, x: np.ndarray) -> Any: ...
    def transform(self, x: np.ndarray) -> np.ndarray: ...


#: A joint fit over the data parties: ``(data session, rows, column names)``.
JointFit = Callable[[Session, np.ndarray, list[str]], object]


def _fit_and_transform(
    ctx: StepContext, model: _Fitted, layout: str, fit_horizontal: JointFit
) -> tuple[list[str], int]:
    """Fit ``model`` on the training rows' features and transform every target frame.

    Vertical data fits locally; horizontal data first agrees the feature
    columns with the other data parties (a schema fingerprint,
    :func:`sharedml.psi.features.agree_horizontal`), then fits jointly with
    ``fit_horizontal``. Returns the feature columns and how many of their
    cells were missing (NaN) before the transform, over all target frames.
    """
    fit_on, keys = _targets(ctx, layout)
    cols = feature_columns(ctx, fit_on)
    x = fit_on[cols].to_numpy(dtype=np.float64)
    if layout == "vertical":
        model.fit(x)
    else:
        from sharedml.psi.features import agree_horizontal

        session = data_session(ctx)
        agree_horizontal(session, dict.fromkeys(cols, "float"))
        fit_horizontal(session, x, cols)
    missing = 0
    for key in keys:
        frame = ctx.state[key].copy()
        vals = frame[cols].to_numpy(dtype=np.float64)
        missing += int(np.isnan(vals).sum())
        frame[cols] = model.transform(vals)
        ctx.state[key] = frame
    return cols, missing


class ScaleParams(Params):
    method: Literal["standard", "minmax"] = "standard"
    layout: Literal["vertical", "horizontal"] = "vertical"
    provider: Literal["dealer", "he"] | None = Field(
        None, description="horizontal min-max only, randomness of its secure maximum: the "
        "job's dealer (default) or Paillier between two parties"
    )

    @model_validator(mode="after")
    def _provider_for_minmax_only(self) -> ScaleParams:
        if self.provider is not None and self.protocol != "ss":
            raise ValueError("provider applies to method 'minmax' with layout 'horizontal' only")
        return self

    @property
    def protocol(self) -> Literal["ss"] | None:
        """``ss`` when the step computes on secret shares (horizontal min-max), which
        is how :func:`sharedml.components.dealer.needs_dealer` sees that the job
        needs a dealer (unless ``provider: he``), as for a ``train`` step."""
        return "ss" if self.method == "minmax" and self.layout == "horizontal" else None


class ScaleStep(Component):
    """Scale feature columns, fitted on the training rows.

    Vertical layout: each party scales its own columns locally; nothing is
    sent. Horizontal layout (every party holds rows of the same columns):

    1. The parties agree on the feature columns (schema fingerprint).
    2. Each party tells the others whether its rows can be fitted on; a party
       with no rows, NaN/infinite values or values beyond the fixed-point
       range makes every party fail with the same error naming it.
    3. ``standard``: two secure sums give the pooled mean and standard
       deviation. ``minmax``: each party secret-shares its column minima and
       maxima, and the element-wise extremes over parties are computed with
       secure comparisons and opened
       (:mod:`sharedml.learn.preprocessing.scaling`). The MPC runtime gets
       its correlated randomness from the job's dealer (``sharedml run`` and
       the platform add one because :attr:`ScaleParams.protocol` is ``ss``),
       or with ``provider: he`` from Paillier between two parties.

    Reveals, to every data party: the feature column names; for
    ``standard`` the pooled mean and standard deviation per column and the
    total row count; for ``minmax`` the pooled minimum and maximum per
    column — never another party's rows, row count, sums or own extremes.
    The dealer learns only the number and shapes of the randomness requests.
    If the step fails in 2, the failing party's reason (no rows, or which
    columns hold NaN/too large values). Security model: semi-honest; the
    dealer must not collude with a data party.

    Each party writes its fitted centre and scale to its own
    ``out_dir/scaler-<step>.json`` (to scale new rows the same way later).
    """

    name = "scale"
    params = ScaleParams
    summary = "standard or min-max scaling; local (vertical) or secure sums / MPC max (horizontal)"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing.scaling import MINMAX_FRAC_BITS, Scaler

        scaler = Scaler(params.method)
        opener = _mpc_opener(ctx, params.provider) if params.protocol == "ss" else None

        def joint(session: Session, x: np.ndarray, cols: list[str]) -> object:
            if opener is not None:  # the check must know the runtime's precision
                session = data_session(ctx, frac_bits=MINMAX_FRAC_BITS)
            return scaler.fit_horizontal(session, x, opener, columns=cols, step=ctx.step_id)

        cols, _ = _fit_and_transform(ctx, scaler, params.layout, joint)
        ctx.state["scaler"] = scaler
        path = ctx.out_dir / f"scaler-{ctx.step_id}.json"
        path.write_text(json.dumps({
            "method": params.method, "layout": params.layout, "columns": cols,
            "center": scaler.center_.tolist(), "scale": scaler.scale_.tolist(),
        }), encoding="utf-8")
        return StepResult(metrics={"columns": len(cols)}, artifacts={"scaler": str(path)})


def _mpc_opener(ctx: StepContext, provider: str | None) -> Callable[[], MPC]:
    """Opens the step's MPC runtime over the data parties, as ``train`` steps make theirs:
    randomness from the job's dealer (its first helper party), or Paillier-made; at
    :data:`~sharedml.learn.preprocessing.scaling.MINMAX_FRAC_BITS` fractional bits."""
    helpers = tuple(p for p in ctx.session.peers if p not in ctx.parties)
    chosen = provider or ("dealer" if helpers else None)
    if chosen is None or (chosen == "dealer" and not helpers):
        raise ConfigError(
            "horizontal min-max scaling computes its maximum on secret shares and needs a "
            "dealer, and this job has none",
            party=ctx.party.name,
            step=ctx.step_id,
            remedy="run it through 'sharedml run' or the platform (both add a dealer), set "
            "'provider: he' (two parties, slower) or use method 'standard'",
        )
    from sharedml.learn.preprocessing.scaling import MINMAX_FRAC_BITS
    from sharedml.mpc import MPC

    if chosen == "he":
        if len(ctx.parties) != 2:
            raise ConfigError(
                f"provider 'he' works between two parties, this job has {len(ctx.parties)}",
                party=ctx.party.name, step=ctx.step_id, remedy="use the dealer (the default)",
            )
        from sharedml.mpc.he import HEProvider

        he_session = data_session(ctx, frac_bits=MINMAX_FRAC_BITS)
        return lambda: MPC(he_session, HEProvider(he_session))
    from sharedml.mpc import DealerProvider

    dealer = helpers[0]
    session = data_session(ctx, (dealer,), frac_bits=MINMAX_FRAC_BITS)
    return lambda: MPC(session, DealerProvider(session, dealer=dealer))


class FillParams(Params):
    strategy: Literal["mean", "median", "constant"] = "mean"
    value: float = 0.0
    layout: Literal["vertical", "horizontal"] = "vertical"


class FillStep(Component):
    """Fill missing feature values, fitted on the training rows.

    Horizontal layout: the parties agree on the feature columns, then
    ``mean`` is the pooled mean of the present values from two secure sums
    (reveals per column the pooled mean and the count of present values);
    ``constant`` needs no traffic; ``median`` is refused (a pooled median
    would need a secure sort).
    """

    name = "fill"
    params = FillParams
    summary = "mean/median/constant filling; joint mean through secure sums (horizontal)"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import Filler

        if params.layout == "horizontal" and params.strategy == "median":
            raise ConfigError(
                "fill: a pooled median over horizontally split rows is not supported",
                party=ctx.party.name,
                step=ctx.step_id,
                remedy="use strategy 'mean' (pooled, through secure sums) or 'constant'",
            )
        filler = Filler(params.strategy, params.value)

        def joint(session: Session, x: np.ndarray, cols: list[str]) -> object:
            return filler.fit_horizontal(session, x)

        cols, filled = _fit_and_transform(ctx, filler, params.layout, joint)
        return StepResult(metrics={"columns": len(cols), "filled_cells": filled})


class WoeParams(Params):
    n_bins: int = Field(10, ge=2, le=256)
    method: Literal["frequency", "width"] = "frequency"
    reveal: Literal["label_holder", "both"] = "label_holder"
    key_bits: int = Field(2048, ge=1024)


class WoeStep(Component):
    """WOE/IV of every party's features against the label holder's encrypted labels."""

    name = "woe"
    params = WoeParams
    summary = "vertical WOE/IV with Paillier-encrypted labels"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import apply_bins, bin_edges, vertical_woe

        frame, _ = _targets(ctx)
        holder = ctx.label_holder
        if holder is None:
            raise ConfigError("woe needs a label holder", party=ctx.party.name, step=ctx.step_id,
                              remedy="declare a label at one party")
        cols = feature_columns(ctx, frame)
        bins = {c: apply_bins(frame[c], bin_edges(frame[c], params.n_bins, params.method))
                for c in cols}
        labels = frame[ctx.party.label].to_numpy() if ctx.party.name == holder else None
        out = vertical_woe(data_session(ctx), holder, bins, labels, reveal=params.reveal,
                           key_bits=params.key_bits)
        ctx.state["woe"] = out
        if ctx.party.name != holder or out is None:
            return StepResult(metrics={"features": len(cols)})
        ivs = {f"{p}.{f}": round(r.iv, 6) for p, res in out.items()
               for f, r in res.items()}  # type: ignore[union-attr]
        return StepResult(metrics={"iv": ivs})


class BinParams(Params):
    n_bins: int = Field(10, ge=2, le=256)
    method: Literal["frequency", "width"] = "frequency"
    columns: list[str] | None = Field(None, description="default: every numeric feature")


class BinStep(Component):
    """Replace feature values by bin indices, edges fitted on the training rows (local)."""

    name = "binning"
    params = BinParams
    summary = "equal-frequency or equal-width binning of each party's own features"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        from sharedml.learn.preprocessing import apply_bins, bin_edges

        fit_on, keys = _targets(ctx)
        cols = params.columns if params.columns is not None else feature_columns(ctx, fit_on)
        cols = [c for c in cols if c in fit_on.columns]
        edges = {c: bin_edges(fit_on[c], params.n_bins, params.method) for c in cols}
        for key in keys:
            frame = ctx.state[key].copy()
            for c in cols:
                frame[c] = apply_bins(frame[c], edges[c]).astype(np.float64)
            ctx.state[key] = frame
        ctx.state["bin_edges"] = edges
        return StepResult(metrics={"columns": len(cols)})


#: A declared category in a job spec; ``null`` declares "missing" as a category.
CategoryValue = str | int | float | bool | None


class OneHotParams(Params):
    columns: list[str] | None = Field(
        None, description="columns to encode; default: the declared categories' columns, else "
        "the party's non-numeric features (never its id or label columns)")
    max_categories: int = Field(
        100, ge=1, description="refuse a column with more categories: high-cardinality one-hot "
        "is almost always a mistake (bin or group the column instead)")
    layout: Literal["vertical", "horizontal"] = "vertical"
    categories: dict[str, list[CategoryValue]] | None = Field(
        None, description="declared categories per column, required for layout 'horizontal' "
        "(fitting them there would reveal every party's values); null declares missing values "
        "a category of their own")
    unknown: Literal["ignore", "error"] = Field(
        "ignore", description="a value outside the categories: all-zero indicators, counted in "
        "the 'unknown' metric (like scikit-learn's handle_unknown='ignore'); or a DataError")

    @model_validator(mode="after")
    def _declared(self) -> OneHotParams:
        if self.layout == "horizontal" and not self.categories:
            raise ValueError("layout 'horizontal' needs 'categories: {column: [values, ...]}': "
                             "fitting them would reveal every party's values")
        if self.categories is not None and self.columns is not None:
            undeclared = [c for c in self.columns if c not in self.categories]
            if undeclared:
                raise ValueError(f"columns {undeclared} have no declared categories")
        for col, values in (self.categories or {}).items():
            n = len(_ordered_labels(values))
            if not 1 <= n <= self.max_categories:
                raise ValueError(f"categories of {col!r} must list 1 to max_categories="
                                 f"{self.max_categories} distinct values, not {n}")
        return self


def _label(value: object) -> str | None:
    """A category's canonical label: a string's text; a number without a trailing ``.0``
    (so ``1``, ``1.0`` and ``"1"`` are one category, whichever dtype a party's column
    has); ``None`` for a missing value (NA, NaN or an empty string)."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value) or None


def _ordered_labels(values: Any, missing: bool = False) -> list[str | None]:
    """Distinct labels of ``values`` in a stable order: numbers ascending, then text
    ascending (scikit-learn's order for a numeric or a text column), missing last."""
    first: dict[str | None, object] = {}
    for value in values:
        first.setdefault(_label(value), value)
    missing = missing or None in first
    first.pop(None, None)

    def key(label: str | None) -> tuple[int, float, str]:
        value = first[label]
        if isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_):
            return (0, float(value), "")
        return (1, 0.0, str(label))

    ordered: list[str | None] = sorted(first, key=key)
    return [*ordered, None] if missing else ordered


def _fit_categories(column: pd.Series) -> list[str | None]:
    """The categories of one column's training values (missing ones: the last category)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    return _ordered_labels(uniques, missing=bool((codes < 0).any()))


def indicator_names(column: str, categories: list[str | None]) -> list[str]:
    """``column=label`` per category; the missing-value category is ``column=nan``."""
    return [f"{column}={'nan' if c is None else c}" for c in categories]


def one_hot_block(column: pd.Series, categories: list[str | None]) -> tuple[np.ndarray, int]:
    """One float64 indicator column per category, and how many rows matched none of them
    (those rows are all zero). Labels are computed per distinct value, not per row."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    where = {label: i for i, label in enumerate(categories)}
    lookup = np.array([where.get(_label(u), -1) for u in uniques] + [where.get(None, -1)],
                      dtype=np.int64)  # the last entry serves the NA code -1
    pos = lookup[codes]
    out = np.zeros((len(column), len(categories)))
    hit = np.flatnonzero(pos >= 0)
    out[hit, pos[hit]] = 1.0
    return out, len(column) - hit.size


def _encode(frame: pd.DataFrame, categories: dict[str, list[str | None]]
            ) -> tuple[pd.DataFrame, dict[str, int]]:
    """``frame`` with each encoded column replaced, in place, by its indicator columns."""
    parts: list[pd.DataFrame] = []
    unknown: dict[str, int] = {}
    for col in frame.columns:
        if col not in categories:
            parts.append(frame[[col]])
            continue
        block, unknown[col] = one_hot_block(frame[col], categories[col])
        names = indicator_names(col, categories[col])
        parts.append(pd.DataFrame(block, index=frame.index, columns=names))
    return (pd.concat(parts, axis=1) if parts else frame.copy()), unknown


class OneHotStep(Component):
    """Replace categorical columns by ``col=value`` float indicator columns.

    Behaves like scikit-learn's ``OneHotEncoder(handle_unknown="ignore")``
    fitted on the training rows (after ``split``; else the whole frame) and
    applied to every frame: categories sorted (numbers ascending, then text);
    a value outside them gives all-zero indicators and is counted in the
    ``unknown`` metric (``unknown: error`` makes it a DataError instead).
    Missing values (NA, NaN, an empty string) are a category of their own,
    ``col=nan``, placed last, when the training rows have any (as in
    scikit-learn); otherwise they count as unknown. Integral numbers and their
    text are one category (``1``, ``1.0``, ``"1"`` → ``col=1``). A column with
    more than ``max_categories`` categories is refused: bin or group it.

    Vertical layout: each party encodes its own columns locally; columns the
    party does not hold are skipped. Nothing is sent; no party learns anything.

    Horizontal layout (every party holds rows of the same columns): every
    party must end with the same indicator columns, and fitting them would
    reveal the union of the parties' values, so the categories are declared
    in the job spec (``categories: {column: [values, ...]}``, ``null`` for a
    missing-value category).

    1. Each party checks its own columns (present, not its id or label).
    2. The parties all-gather, per encoded column, the SHA-256 schema
       fingerprint (:func:`sharedml.psi.features.schema_fingerprint`) of its
       declared categories in canonical order, and the outcome of 1.
    3. A fingerprint that differs, or a party's failed check, makes every
       party fail with a ConfigError/DataError naming the step, the columns
       and the parties concerned; otherwise each party encodes its own rows.

    Reveals, to every data party: which columns each party encodes, the
    fingerprints of its declared categories (of the job spec, not of data)
    and, on failure, the reason of 1 — never a value, a row or a count. As
    metrics (to the job's result and the platform): per column the number of
    categories and of rows holding a value outside them. Security model:
    semi-honest; a party that lies in 2 only makes the job fail.

    Each party writes its categories to its own ``out_dir/onehot-<step>.json``
    (in vertical data they are its own values) to encode new rows the same way.
    """

    name = "onehot"
    params = OneHotParams
    summary = "one-hot encoding; fitted locally (vertical) or declared and fingerprinted (horizontal)"

    def run(self, ctx: StepContext, params: Any) -> StepResult:
        fit_on, keys = _targets(ctx, params.layout)
        if params.layout == "horizontal":
            categories = _agree_categories(ctx, fit_on, params)
        else:
            cols = _onehot_columns(ctx, fit_on, params)
            categories = {c: (_ordered_labels(params.categories[c]) if params.categories
                              else _fit_categories(fit_on[c])) for c in cols}
            _check_cardinality(ctx, categories, params.max_categories)
        encoded: dict[str, pd.DataFrame] = {}
        unknown = dict.fromkeys(categories, 0)
        for key in keys:
            encoded[key], counts = _encode(ctx.state[key], categories)
            for col, n in counts.items():
                unknown[col] += n
        _check_unknown(ctx, unknown, params.unknown)
        ctx.state.update(encoded)
        ctx.state["onehot"] = categories
        names = [n for c, cats in categories.items() for n in indicator_names(c, cats)]
        path = ctx.out_dir / f"onehot-{ctx.step_id}.json"
        path.write_text(json.dumps({"layout": params.layout, "categories": categories,
                                    "indicators": names}), encoding="utf-8")
        metrics = {"categories": {c: len(v) for c, v in categories.items()},
                   "indicators": len(names), "unknown": unknown}
        return StepResult(metrics=metrics, artifacts={"onehot": str(path)})


def _onehot_columns(ctx: StepContext, frame: pd.DataFrame, params: Any) -> list[str]:
    """The columns this party encodes; refuses its id or label columns and, in horizontal
    data, a declared column it does not hold."""
    skip = set(ctx.party.id_columns) | ({ctx.party.label} if ctx.party.label else set())
    if params.columns is not None or params.categories:
        wanted = list(params.columns if params.columns is not None else params.categories)
    else:
        wanted = [c for c in frame.columns
                  if c not in skip and not pd.api.types.is_numeric_dtype(frame[c])]
    protected = [c for c in wanted if c in skip]
    if protected:
        raise ConfigError(f"columns {protected} are this party's id or label columns; one-hot "
                          "encodes features only", party=ctx.party.name, step=ctx.step_id,
                          remedy="remove them from the step's columns/categories")
    absent = [c for c in wanted if c not in frame.columns]
    if absent and params.layout == "horizontal":
        raise DataError(f"columns {absent} are not in this party's data", party=ctx.party.name,
                        step=ctx.step_id, remedy="every party must hold the encoded columns")
    return [c for c in wanted if c in frame.columns]


def _check_cardinality(ctx: StepContext, categories: dict[str, list[str | None]],
                       limit: int) -> None:
    for col, cats in categories.items():
        if len(cats) > limit:
            raise ConfigError(
                f"column {col!r} has {len(cats)} categories in the training rows, more than "
                f"max_categories={limit}", party=ctx.party.name, step=ctx.step_id,
                remedy="bin it (step 'binning') or group rare values first, leave it out of "
                "'columns', or raise max_categories if that many indicators are really meant")


def _check_unknown(ctx: StepContext, unknown: dict[str, int], policy: str) -> None:
    bad = {c: n for c, n in unknown.items() if n}
    if bad and policy == "error":
        raise DataError(f"rows hold values outside the categories (rows per column: {bad})",
                        party=ctx.party.name, step=ctx.step_id,
                        remedy="declare those values, fix the data, or set unknown: ignore "
                        "(all-zero indicators)")


def _agree_categories(ctx: StepContext, frame: pd.DataFrame, params: Any
                      ) -> dict[str, list[str | None]]:
    """Steps 1-3 of :class:`OneHotStep`'s horizontal protocol; the declared categories."""
    from sharedml.errors import SharedMLError
    from sharedml.psi.features import schema_fingerprint

    problem = None
    try:
        _onehot_columns(ctx, frame, params)
    except SharedMLError as exc:
        problem = exc.message
    cols = list(params.columns if params.columns is not None else params.categories)
    categories = {c: _ordered_labels(params.categories[c]) for c in cols}
    prints = {c: schema_fingerprint({c: json.dumps(v)}).hex() for c, v in categories.items()}
    raw = data_session(ctx).channel.all_gather(
        "onehot/categories", json.dumps({"prints": prints, "problem": problem}).encode())
    said = {p: json.loads(bytes(v)) for p, v in raw.items()}
    failed = {p: s["problem"] for p, s in said.items() if s["problem"]}
    if failed:
        raise DataError(f"one-hot encoding cannot start: {failed}", party=ctx.party.name,
                        step=ctx.step_id, remedy="fix the named party's columns or the step")
    differ = {p: sorted(c for c in set(prints) | set(s["prints"])
                        if prints.get(c) != s["prints"].get(c))
              for p, s in said.items() if p != ctx.party.name}
    differ = {p: cs for p, cs in differ.items() if cs}
    if differ:
        raise ConfigError(
            f"the declared categories differ from those of {sorted(differ)} in columns "
            f"{sorted({c for cs in differ.values() for c in cs})}", party=ctx.party.name,
            step=ctx.step_id, remedy="give every party the same job spec (same categories)")
    return categories

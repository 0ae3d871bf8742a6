"""The ``onehot`` job step: categorical columns as ``col=value`` indicator columns.

Categories come from the training rows (vertical data, local) or are declared
in the job spec and fingerprinted (horizontal data); see :class:`OneHotStep`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from sharedml.components.base import (
    Component,
    Params,
    RowsUnlessHorizontal,
    StepContext,
    StepResult,
)
from sharedml.components.frames import targets
from sharedml.errors import ConfigError, DataError
from sharedml.modelpart.pipeline import record

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


def encode_categories(frame: pd.DataFrame, categories: dict[str, list[str | None]]
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


class OneHotStep(RowsUnlessHorizontal, Component):
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
        fit_on, keys = targets(ctx, params.layout)
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
            encoded[key], counts = encode_categories(ctx.state[key], categories)
            for col, n in counts.items():
                unknown[col] += n
        _check_unknown(ctx, unknown, params.unknown)
        ctx.state.update(encoded)
        ctx.state["onehot"] = categories
        record(ctx.state, {"op": "onehot", "categories": categories})
        names = [n for c, cats in categories.items() for n in indicator_names(c, cats)]
        path = ctx.artifact("onehot", ".json")
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
    raw = ctx.session.without_dealer().channel.all_gather(
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

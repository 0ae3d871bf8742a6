"""The ``train`` step's parameters, derived from the learners' own declarations.

Each learner declares its hyper-parameters once (``params``,
:mod:`sharedml.learn.params`); :class:`TrainParams` is built from them: one
field per parameter a job may set (``Param.job``), typed and bounded as loosely
as the learners that take it allow, its description saying each model's
default. When a spec is loaded, the chosen model's own rules are applied: a
parameter it does not take, or a value outside its rule, is an error naming
the step before any process starts. ``sharedml components show train`` prints
the derived schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model, model_validator

from sharedml.components.base import Params
from sharedml.errors import ConfigError
from sharedml.fl.declared import HORIZONTAL, dp_config, horizontal_class
from sharedml.learn.linear import HELogisticRegression, SSLinearRegression, SSLogisticRegression
from sharedml.learn.nn import (
    SplitMLPClassifier,
    SplitMLPRegressor,
    SSMLPClassifier,
    SSMLPRegressor,
)
from sharedml.learn.params import Param
from sharedml.learn.tree import SecureBoostClassifier, SecureBoostRegressor

MODELS = ("logistic_regression", "linear_regression", "secureboost", "mlp", "gbdt")
#: Every learner a train step may build, as the schema's descriptions name it.
LEARNERS: dict[str, type] = {
    "logistic_regression (ss)": SSLogisticRegression,
    "logistic_regression (he)": HELogisticRegression,
    "linear_regression": SSLinearRegression,
    "secureboost": SecureBoostClassifier,
    "mlp (ss)": SSMLPClassifier,
    "mlp (split)": SplitMLPClassifier,
    **{f"{name} (horizontal)": cls for name, cls in HORIZONTAL.items()},
}
#: Protocols that compute on secret shares (``provider`` applies to these only).
SHARED_PROTOCOLS = ("ss", "split")
#: Fields that choose the learner; ``provider`` applies to ``SHARED_PROTOCOLS`` only.
_CHOICE = ("model", "protocol", "task", "provider", "layout", "aggregator")
#: The schema's own fields (``provider`` comes from the learners that take it).
_SCHEMA_OWN = ("model", "protocol", "task", "layout", "aggregator")


def model_class(model: str, protocol: str, task: str | None, layout: str = "vertical") -> type:
    """The learner class for a ``train`` step (for ``layout: horizontal``, the model's
    declaration in :mod:`sharedml.fl.declared`)."""
    if layout == "horizontal":
        return horizontal_class(model)
    if model == "gbdt":
        raise ConfigError("gbdt is the horizontal boosted trees", step="train",
                          remedy="set layout: horizontal, or use model: secureboost (vertical)")
    if model == "logistic_regression":
        return HELogisticRegression if protocol == "he" else SSLogisticRegression
    if model == "linear_regression":
        if protocol == "he":
            raise ConfigError(
                "linear_regression has no 'he' protocol", step="train", remedy="use protocol: ss"
            )
        return SSLinearRegression
    if model == "mlp":
        return _mlp_class(protocol, task)
    return SecureBoostRegressor if task == "regression" else SecureBoostClassifier


def _mlp_class(protocol: str, task: str | None) -> type:
    regression = task == "regression"
    if protocol == "split":
        return SplitMLPRegressor if regression else SplitMLPClassifier
    if protocol == "ss":
        return SSMLPRegressor if regression else SSMLPClassifier
    raise ConfigError(
        f"mlp has no {protocol!r} protocol", step="train", remedy="use protocol: ss or split"
    )


class _TrainBase(Params):
    model: Literal["logistic_regression", "linear_regression", "secureboost", "mlp", "gbdt"] = (
        Field(description="gbdt: boosted trees with layout: horizontal (vertical: secureboost)"))
    layout: Literal["vertical", "horizontal"] = Field(
        "vertical", description="vertical: the parties hold different columns of the same rows "
        "(aligned by psi); horizontal: the same columns of different rows, trained by secure "
        "aggregation with the job's helper as aggregator (no protocol, no provider)")
    aggregator: str | None = Field(
        None, description="layout: horizontal: the data party that aggregates (it learns the "
        "sum of every round's updates, as the helper would); default: the job's helper")
    protocol: Literal["ss", "he", "split"] = Field(
        "ss", description="ss or he; mlp: ss (everything on shares) or split (own nets, "
        "an interactive layer on shares); not with layout: horizontal"
    )
    task: Literal["classification", "regression"] | None = Field(
        None, description="secureboost, gbdt and mlp (default classification); linear models "
        "imply it"
    )

    def given(self) -> dict[str, Any]:
        """The learner's parameters the step sets (the others keep the learner's defaults)."""
        out = {k: v for k, v in self.model_dump().items() if v is not None and k not in _CHOICE}
        provider = getattr(self, "provider", None)
        if provider is not None and self.protocol in SHARED_PROTOCOLS:
            out["provider"] = provider
        return out

    def deals(self) -> bool:
        """Whether this train step computes on dealt shares (never with layout: horizontal)."""
        provider = getattr(self, "provider", None)
        return self.layout != "horizontal" and self.protocol in SHARED_PROTOCOLS and (
            provider != "he")

    @model_validator(mode="after")
    def _the_models_own_rules(self) -> _TrainBase:
        chosen = self.protocol != "ss" or getattr(self, "provider", None) is not None
        if self.layout == "horizontal" and chosen:  # (a dumped spec holds the defaults)
            raise ValueError("layout: horizontal runs on secure aggregation: it takes no "
                             "protocol or provider")
        try:
            cls = model_class(self.model, self.protocol, self.task, self.layout)
        except ConfigError as exc:
            raise ValueError(f"{exc.message} ({exc.remedy})" if exc.remedy else exc.message) from None
        declared: dict[str, Param] = cls.params  # type: ignore[attr-defined]
        unknown = sorted(set(self.given()) - {n for n, p in declared.items() if p.job})
        if unknown:
            how = self.layout if self.layout == "horizontal" else self.protocol
            raise ValueError(f"{self.model} ({how}) does not take {unknown}")
        for name, value in self.given().items():
            if not declared[name].accepts(value):
                raise ValueError(f"{name} of {self.model} must be {declared[name].rule()}")
        if self.layout == "horizontal":
            try:
                dp_config(self.given())
            except ConfigError as exc:
                raise ValueError(f"{exc.message} ({exc.remedy})") from None
        return self


def _field(entries: list[tuple[str, Param]]) -> tuple[Any, Any]:
    """One schema field for a parameter some learners take: the loosest of their rules."""
    first = entries[0][1]
    params = [p for _, p in entries]
    if first.choices is not None:
        values = tuple(dict.fromkeys(c for p in params for c in p.choices or ()))
        annotation: Any = Literal[values]
    elif first.kind is list:  # layer sizes: the learner's rule checks each item
        return list[int] | None, Field(None, description=_description(entries))
    else:
        annotation = first.kind
    bounds: dict[str, float] = {}
    if all(p.low is not None for p in params):
        low = min(params, key=lambda p: (p.low, not p.open_low))
        bounds["gt" if low.open_low else "ge"] = float(low.low)  # type: ignore[arg-type]
    if all(p.high is not None for p in params):
        high = max(params, key=lambda p: (p.high, not p.open_high))
        bounds["lt" if high.open_high else "le"] = float(high.high)  # type: ignore[arg-type]
    return annotation | None, Field(None, description=_description(entries), **bounds)  # type: ignore[call-overload]


def _description(entries: list[tuple[str, Param]]) -> str:
    """What the parameter means (per model where they differ) and each model's default."""
    texts: dict[str, list[str]] = {}
    defaults: dict[str, list[str]] = {}
    for label, p in entries:
        texts.setdefault(p.description, []).append(label)
        defaults.setdefault(repr(p.default), []).append(label)
    meaning = next(iter(texts)) if len(texts) == 1 else "; ".join(
        f"{text} ({', '.join(labels)})" for text, labels in texts.items())
    said = ", ".join(f"{d} ({', '.join(labels)})" for d, labels in defaults.items())
    return f"{meaning}. Default: {said}"


def _derive() -> type[_TrainBase]:
    merged: dict[str, list[tuple[str, Param]]] = {}
    for label, cls in LEARNERS.items():
        for name, param in cls.params.items():  # type: ignore[attr-defined]
            if param.job and name not in _SCHEMA_OWN:
                merged.setdefault(name, []).append((label, param))
    fields: dict[str, Any] = {name: _field(entries) for name, entries in merged.items()}
    return create_model("TrainParams", __base__=_TrainBase, __module__=__name__, **fields)


#: The ``train`` step's schema (see the module docstring).
TrainParams = _derive()


def build_model(params: _TrainBase) -> Any:
    """The estimator for ``params``: only the hyper-parameters that were given.

    A secret-shared model's randomness (``provider``) is left to the session
    when not given: the job's dealer (:meth:`sharedml.session.Session.mpc_runtime`)."""
    cls = model_class(params.model, params.protocol, params.task)
    given = params.given()
    if "protocol" in cls.params:  # type: ignore[attr-defined]
        given["protocol"] = params.protocol
    return cls(**given)

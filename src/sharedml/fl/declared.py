"""The horizontal learners' hyper-parameters, declared once, and the roles built from them.

A ``train`` step with ``layout: horizontal`` names one of :data:`HORIZONTAL`
(``logistic_regression``, ``linear_regression``, ``mlp``, ``gbdt``). Each is
declared here as a class whose ``params`` lists what a job may set (the
:class:`~sharedml.learn.params.Param` declarations the vertical learners use
too, so ``sharedml components show train`` prints both from one schema).
:func:`fedavg_setup` and :func:`gbdt_params` turn the given values into the
library's own configurations (:class:`~sharedml.fl.fedavg.FedAvgSetup`,
:class:`~sharedml.fl.gbdt.GbdtParams`); :func:`secagg_config` fixes the
secure aggregation every round of the step runs (who aggregates, who
submits, how many may drop out, the masking graph).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sharedml.errors import ConfigError
from sharedml.fl.dp import DEFAULT_DELTA, DpConfig
from sharedml.fl.fedavg import METRICS, FedAvgParams, FedAvgSetup
from sharedml.fl.gbdt import GbdtParams
from sharedml.fl.learner import LocalLearner
from sharedml.fl.linear import LinearLearner
from sharedml.fl.secagg import SecAggConfig
from sharedml.fl.secagg.graph import default_degree
from sharedml.learn.params import Param
from sharedml.learn.training import SCHEDULES

#: What a round of secure aggregation may tolerate and how it masks (every horizontal model).
SECAGG: dict[str, Param] = {
    "max_dropouts": Param(int, 0, "parties that may drop out of a round (after it started) "
                          "without aborting it; the rest must be a majority", low=0),
    "neighbours": Param(int, None, "SecAgg+ masking degree, an even number (each party masks "
                        "with that many others); default: chosen by the number of parties",
                        low=2, optional=True),
    "update_bound": Param(float, float(2**20), "every value a party adds must lie within "
                          "± this (the fixed-point range; scale the data first); with DP the "
                          "default is dp_clip; below 128 / parties the sums run on 32-bit "
                          "words", low=0, open_low=True),
    "stage_timeout": Param(float, 30.0, "seconds the aggregator waits for one stage of a "
                           "round before it counts the silent parties out", low=0, open_low=True),
}
#: Federated averaging (logistic and linear regression, the MLP).
FEDAVG: dict[str, Param] = {
    "rounds": Param(int, 20, "federated rounds: local training at the chosen parties, then "
                    "one secure sum of their updates", low=1, high=100_000),
    "local_epochs": Param(int, 1, "passes a party makes over its own rows each round", low=1,
                          high=10_000),
    "batch_size": Param(int, 64, "rows per step of local SGD", low=1),
    "learning_rate": Param(float, 0.1, "local SGD step size (at round 0 of the schedule)",
                           low=0, open_low=True),
    "lr_schedule": Param(str, "constant", "learning-rate schedule over the rounds",
                         choices=SCHEDULES),
    "prox_mu": Param(float, 0.0, "FedProx proximal weight mu (0: FedAvg)", low=0),
    "client_fraction": Param(float, 1.0, "share of the parties drawn for each round (never "
                             "fewer than the aggregation needs)", low=0, open_low=True, high=1),
    "early_stopping_rounds": Param(int, 0, "stop after this many rounds without a better "
                                   "validation metric and keep the best model; 0: never",
                                   low=0),
    "metric": Param(str, None, "validation metric each round reports and early stopping "
                    "follows (default: auc, or rmse for regression)", choices=tuple(METRICS),
                    optional=True),
    "validation": Param(float, 0.1, "share of each party's training rows it holds out to "
                        "score every round's model (summed securely)", low=0, high=0.5),
    "seed": Param(int, 0, "seed of the initial model, of the public draw of each round's "
                  "parties and of the batch order", low=0),
    "dp_clip": Param(float, None, "client-level differential privacy: L2 norm each party's "
                     "round update is clipped to; unset: no DP", low=0, open_low=True,
                     optional=True),
    "dp_noise_multiplier": Param(float, None, "Gaussian noise the aggregator adds, as a "
                                 "multiple of dp_clip (set both or neither)", low=0,
                                 open_low=True, optional=True),
    "dp_delta": Param(float, DEFAULT_DELTA, "the delta that epsilon is reported for", low=0,
                      high=1, open_low=True, open_high=True),
    **SECAGG,
}


class Horizontal:
    """A horizontal model's declaration: its fixed task (``None``: the job's) and parameters."""

    task: ClassVar[str | None] = None
    params: ClassVar[dict[str, Param]] = {}


class HorizontalLogisticRegression(Horizontal):
    """FedAvg / FedProx logistic regression (numpy)."""

    task = "classification"
    params: ClassVar[dict[str, Param]] = {
        **FEDAVG, "l2": Param(float, 0.0, "L2 penalty of the local objective", low=0),
    }


class HorizontalLinearRegression(HorizontalLogisticRegression):
    """FedAvg / FedProx least-squares regression (numpy)."""

    task = "regression"


class HorizontalMLP(Horizontal):
    """FedAvg / FedProx multilayer perceptron (PyTorch: the ``torch`` extra)."""

    params: ClassVar[dict[str, Param]] = {
        **FEDAVG,
        "hidden_layer_sizes": Param(list, (64, 32), "hidden layer widths", low=1, high=4096),
        "activation": Param(str, "relu", "hidden activation",
                            choices=("relu", "tanh", "sigmoid", "gelu")),
        "dropout": Param(float, 0.0, "dropout after each hidden layer", low=0, high=1,
                         open_high=True),
        "l2": Param(float, 0.0, "weight decay of local SGD", low=0),
    }


class HorizontalGBDT(Horizontal):
    """Federated histogram gradient boosting (XGBoost's gain on securely summed histograms)."""

    params: ClassVar[dict[str, Param]] = {
        "n_estimators": Param(int, 30, "trees", low=1, high=10_000),
        "max_depth": Param(int, 3, "depth of each tree", low=1, high=12),
        "learning_rate": Param(float, 0.3, "shrinkage of each tree's weights", low=0,
                               open_low=True),
        "n_bins": Param(int, 32, "bins per feature (edges agreed by a secure quantile sketch)",
                        low=2, high=1024),
        "reg_lambda": Param(float, 1.0, "L2 penalty on leaf weights", low=0),
        "gamma": Param(float, 0.0, "least gain a split must bring", low=0),
        "min_child_weight": Param(float, 1.0, "least hessian sum of a child", low=0),
        "sketch_cells": Param(int, 1024, "cells per feature of the quantile sketch's grid",
                              low=16, high=65_536),
        **SECAGG,
    }


#: ``model`` name -> its horizontal declaration.
HORIZONTAL: dict[str, type[Horizontal]] = {
    "logistic_regression": HorizontalLogisticRegression,
    "linear_regression": HorizontalLinearRegression,
    "mlp": HorizontalMLP,
    "gbdt": HorizontalGBDT,
}


def horizontal_class(model: str) -> type[Horizontal]:
    """The declaration of ``model`` trained with ``layout: horizontal``."""
    if model not in HORIZONTAL:
        remedy = "use model: gbdt (federated boosted trees)" if model == "secureboost" else (
            f"use one of {sorted(HORIZONTAL)}")
        raise ConfigError(f"{model} has no horizontal layout", step="train", remedy=remedy)
    return HORIZONTAL[model]


def _value(given: dict[str, Any], declared: dict[str, Param], name: str) -> Any:
    return given.get(name, declared[name].default)


def task_of(model: str, task: str | None) -> str:
    """The task of a horizontal model: fixed by linear models, else ``task`` or classification."""
    fixed = horizontal_class(model).task
    return str(fixed or task or "classification")


def secagg_config(server: str, clients: tuple[str, ...], given: dict[str, Any]) -> SecAggConfig:
    """The secure aggregation of one step: ``server`` sums what ``clients`` submit."""
    dropouts = int(given.get("max_dropouts", 0))
    n = len(clients)
    if n < 2:
        raise ConfigError(f"horizontal training needs at least two data parties, got {n}",
                          remedy="a sum of one party's update is that update: add a party")
    if 2 * (n - dropouts) <= n:
        raise ConfigError(f"max_dropouts {dropouts} of {n} parties leaves no majority",
                          remedy=f"set max_dropouts below {(n + 1) // 2}")
    degree = given.get("neighbours") or default_degree(n)
    if degree is not None and degree % 2:
        raise ConfigError(f"neighbours must be even, got {degree}")
    if degree is not None and degree >= n - 1:
        degree = None  # a neighbourhood of everyone is the complete graph
    group = n if degree is None else degree + 1
    threshold = group - dropouts  # a neighbourhood may lose every dropout of the round
    if 2 * threshold <= group:
        raise ConfigError(f"max_dropouts {dropouts} leaves no majority of a neighbourhood of "
                          f"{group}", remedy="raise neighbours or lower max_dropouts")
    return SecAggConfig(
        server, clients, threshold, update_bound(given), float(given.get("stage_timeout", 30.0)),
        degree,
    )  # fmt: skip


def update_bound(given: dict[str, Any]) -> float:
    """The job's ``update_bound``; unset with DP, ``dp_clip`` (a clipped update's every
    value lies within its L2 norm; 1e-6 relative spare for the clipping's rounding), so
    a DP job of fewer than ``128 / dp_clip`` parties sums on Z_2^32; else 2^20."""
    if given.get("update_bound") is not None:
        return float(given["update_bound"])
    if given.get("dp_clip") is not None and given.get("dp_noise_multiplier") is not None:
        return float(given["dp_clip"]) * (1 + 1e-6)
    return float(2**20)


def dp_config(given: dict[str, Any]) -> DpConfig | None:
    """Client-level DP from ``dp_clip`` and ``dp_noise_multiplier`` (both or neither)."""
    clip, sigma = given.get("dp_clip"), given.get("dp_noise_multiplier")
    if clip is None and sigma is None:
        return None
    if clip is None or sigma is None:
        raise ConfigError("differential privacy needs both dp_clip and dp_noise_multiplier",
                          step="train", remedy="set both, or neither for no DP")
    return DpConfig(float(clip), float(sigma), float(given.get("dp_delta", DEFAULT_DELTA)))


def local_learner(model: str, task: str, given: dict[str, Any]) -> LocalLearner:
    """The local model of FedAvg for ``model`` (``logistic_regression``,
    ``linear_regression``, ``mlp``) with the hyper-parameters ``given``."""
    declared = horizontal_class(model).params
    if model == "mlp":
        from sharedml.fl.mlp import MlpLearner, MlpSpec

        spec = MlpSpec(tuple(_value(given, declared, "hidden_layer_sizes")),
                       _value(given, declared, "activation"), _value(given, declared, "dropout"))
        return MlpLearner(spec, task, weight_decay=_value(given, declared, "l2"))
    return LinearLearner(task, l2=_value(given, declared, "l2"))


def fedavg_setup(model: str, task: str, given: dict[str, Any], secagg: SecAggConfig) -> FedAvgSetup:
    """FedAvg's roles for ``model`` (``logistic_regression``, ``linear_regression``, ``mlp``)."""
    declared = horizontal_class(model).params
    learner = local_learner(model, task, given)
    metric = given.get("metric") or ("auc" if task == "classification" else "rmse")
    params = FedAvgParams(**_pick(given, declared, _FEDAVG_FIELDS), metric=metric)
    return FedAvgSetup(learner, params, secagg, dp_config(given))


def gbdt_params(task: str, given: dict[str, Any]) -> GbdtParams:
    """The federated trees' parameters (XGBoost's names: ``n_estimators`` trees)."""
    declared = HorizontalGBDT.params
    return GbdtParams(**_pick(given, declared, _GBDT_FIELDS), task=task)


#: FedAvgParams' and GbdtParams' fields, each from the job parameter named beside it.
_FEDAVG_FIELDS = {"rounds": "rounds", "local_epochs": "local_epochs", "batch_size": "batch_size",
                  "learning_rate": "learning_rate", "schedule": "lr_schedule",
                  "prox_mu": "prox_mu", "client_fraction": "client_fraction",
                  "patience": "early_stopping_rounds", "seed": "seed"}
_GBDT_FIELDS = {"n_trees": "n_estimators", "max_depth": "max_depth", "n_bins": "n_bins",
                "learning_rate": "learning_rate", "reg_lambda": "reg_lambda", "gamma": "gamma",
                "min_child_weight": "min_child_weight", "sketch_cells": "sketch_cells"}


def _pick(given: dict[str, Any], declared: dict[str, Param], fields: dict[str, str]) -> dict[str, Any]:
    """``{field: the job's value (or the default) of its parameter}`` for ``fields``."""
    return {field: _value(given, declared, name) for field, name in fields.items()}

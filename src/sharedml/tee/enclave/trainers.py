"""The learners a ``train`` step runs inside the enclave, on the joined plaintext.

Pure functions (no I/O, no keys): each takes the training matrix, labels and
the step's parameters and returns a :class:`~sharedml.tee.model.ReleasedModel`,
the form the model is released in and scored with, inside and outside alike.

* ``logistic_regression`` / ``linear_regression``: the MPC learners' own
  algorithm without the MPC — columns standardised, then
  :func:`~sharedml.learn.linear._core.plaintext_sgd` (the oracle the SS
  learners are tested against) with the step's ``epochs``, ``batch_size``,
  ``learning_rate``, ``lr_schedule`` and ``l2`` and the learners' defaults,
  exact sigmoid, float64. The shuffle seed is public (the job and step).
* ``secureboost``: XGBoost, the plaintext model SecureBoost emulates, with the
  step's tree parameters mapped to XGBoost's names (:data:`XGB_NAMES`).
* ``mlp``: a PyTorch network (the ``torch`` extra) in float64 — standardised
  inputs, the step's hidden layers and activation, the MPC learners' batch
  plan and learning-rate schedule, SGD or AdamW with weight decay ``l2`` on the
  weights only; torch's default initialisation under the public seed.

The model's features are the joined columns ``owner.column`` after the job's
preprocessing steps.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from sharedml.errors import ConfigError
from sharedml.learn.params import Param
from sharedml.tee.model import ReleasedModel

#: The step's parameter -> XGBoost's.
XGB_NAMES = {"n_estimators": "n_estimators", "max_depth": "max_depth", "learning_rate": "learning_rate",
             "n_bins": "max_bin", "reg_lambda": "reg_lambda", "min_child_weight": "min_child_weight",
             "subsample": "subsample", "colsample_bytree": "colsample_bytree"}


def public_seed(job: str, step: str) -> bytes:
    """The shuffle seed of a step: public, from the job and step names (16 bytes)."""
    return hashlib.sha256(f"sharedml.tee/{job}/{step}".encode()).digest()[:16]


def defaults(model: str, protocol: str = "ss") -> dict[str, Any]:
    """The MPC learner's declared defaults for ``model`` (one owner of the numbers)."""
    from sharedml.components.train_params import model_class

    declared: dict[str, Param] = model_class(model, protocol, None).params  # type: ignore[attr-defined]
    return {name: p.default for name, p in declared.items()}


def fit(model: str, task: str, x: np.ndarray, y: np.ndarray, features: list[str],
        params: Mapping[str, Any], seed: bytes) -> ReleasedModel:
    """Fit ``model`` on ``(x, y)`` with the step's ``params`` (those given; defaults else)."""
    if model in ("logistic_regression", "linear_regression"):
        return _linear(model, x, y, features, {**defaults(model), **params}, seed)
    if model == "secureboost":
        return _boost(task, x, y, features, params, seed)
    if model == "mlp":
        return _mlp(task, x, y, features, {**defaults("mlp"), **params}, seed)
    raise ConfigError(f"model {model!r} does not train inside the enclave", step="train")


def _scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def _linear(model: str, x: np.ndarray, y: np.ndarray, features: list[str], p: Mapping[str, Any],
            seed: bytes) -> ReleasedModel:
    from sharedml.learn.linear._core import plaintext_sgd

    mean, scale = _scaler(x)
    task = "classification" if model == "logistic_regression" else "regression"
    coef, intercept = plaintext_sgd((x - mean) / scale, y.astype(np.float64), task=task,
                                    epochs=int(p["epochs"]), batch_size=int(p["batch_size"]),
                                    eta0=float(p["learning_rate"]), schedule=str(p["lr_schedule"]),
                                    l2=float(p["l2"]), seed=seed)
    return ReleasedModel(model, features, {"mean": mean.tolist(), "scale": scale.tolist(),
                                           "coef": coef.tolist(), "intercept": float(intercept)})


def _boost(task: str, x: np.ndarray, y: np.ndarray, features: list[str], params: Mapping[str, Any],
           seed: bytes) -> ReleasedModel:
    import xgboost as xgb

    given = {XGB_NAMES[k]: v for k, v in params.items()}
    settings = {"n_estimators": 30, "max_depth": 3, "max_bin": 32, "learning_rate": 0.3,
                "tree_method": "hist", **given}
    random_state = int.from_bytes(seed[:4], "little")
    cls = xgb.XGBClassifier if task == "classification" else xgb.XGBRegressor
    est = cls(**settings, random_state=random_state)
    est.fit(x, y)
    raw = est.get_booster().save_raw("json")
    return ReleasedModel("xgboost", features, {"task": task}, bytes(raw))


def _mlp(task: str, x: np.ndarray, y: np.ndarray, features: list[str], p: Mapping[str, Any],
         seed: bytes) -> ReleasedModel:
    try:
        import torch
    except ImportError:
        raise ConfigError("the mlp needs PyTorch inside the enclave", step="train",
                          remedy="build the enclave image with the 'torch' extra") from None
    from sharedml.learn.linear._core import batch_plan, learning_rate

    mean, scale = _scaler(x)
    xt = torch.from_numpy((x - mean) / scale)
    yt = torch.from_numpy(y.astype(np.float64))
    hidden = [int(h) for h in p["hidden_layer_sizes"]]
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "logistic": torch.nn.Sigmoid,
           "identity": torch.nn.Identity}[str(p["activation"])]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int.from_bytes(seed[:8], "little") & (2**63 - 1))
        widths = [x.shape[1], *hidden]
        layers: list[Any] = []
        for fan_in, fan_out in itertools.pairwise(widths):
            layers += [torch.nn.Linear(fan_in, fan_out, dtype=torch.float64), act()]
        layers.append(torch.nn.Linear(widths[-1], 1, dtype=torch.float64))
        net = torch.nn.Sequential(*layers)
    weights = [q for name, q in net.named_parameters() if name.endswith("weight")]
    biases = [q for name, q in net.named_parameters() if name.endswith("bias")]
    groups = [{"params": weights, "weight_decay": float(p["l2"])}, {"params": biases, "weight_decay": 0.0}]
    eta0 = float(p["learning_rate"])
    opt: Any = (torch.optim.SGD(groups, lr=eta0) if p["optimizer"] == "sgd" else
                torch.optim.AdamW(groups, lr=eta0, betas=(float(p["beta1"]), float(p["beta2"])),
                                  eps=float(p["adam_epsilon"])))
    loss_fn = torch.nn.BCEWithLogitsLoss() if task == "classification" else torch.nn.MSELoss()
    epochs, batch = int(p["epochs"]), int(p["batch_size"])
    total, step = epochs * len(batch_plan(len(y), batch, seed, 0)), 0
    for epoch in range(epochs):
        for idx in batch_plan(len(y), batch, seed, epoch):
            for group in opt.param_groups:
                group["lr"] = learning_rate(str(p["lr_schedule"]), eta0, step, total)
            rows = torch.from_numpy(idx)
            opt.zero_grad()
            loss_fn(net(xt[rows]).squeeze(1), yt[rows]).backward()
            opt.step()
            step += 1
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    return ReleasedModel("mlp", features, {
        "mean": mean.tolist(), "scale": scale.tolist(), "activation": str(p["activation"]), "task": task,
        "layers": [[m.weight.detach().numpy().T.tolist(), m.bias.detach().numpy().tolist()] for m in linear],
    })

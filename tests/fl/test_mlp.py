"""FedAvg for a PyTorch MLP (the ``torch`` extra): parity with the same network trained
centrally on the union with the same seed and as many passes over every row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sharedml.errors import ConfigError
from sharedml.fl.fedavg import FedAvgParams

from .fl_world import load, run_fedavg, union

torch = pytest.importorskip("torch")
from sklearn.metrics import roc_auc_score  # noqa: E402

from sharedml.fl.mlp import MlpLearner, MlpSpec  # noqa: E402

SPEC = MlpSpec(hidden=(64, 32), activation="relu")
SETTINGS = {  # rounds, local epochs, batch size, learning rate
    "default_credit": (15, 2, 256, 0.3),
    "breast": (15, 2, 32, 0.1),
}


def reference_net(n_features: int, seed: int) -> torch.nn.Sequential:
    """SPEC's network written out in torch, initialised under ``seed``."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1),
    )  # fmt: skip


def central_network(
    X: np.ndarray, y: np.ndarray, epochs: int, batch: int, lr: float, seed: int
) -> torch.nn.Sequential:
    """The reference: torch's own loop on the union from the same initialisation."""
    net = reference_net(X.shape[1], seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(len(yt), generator=gen).split(batch):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(
                net(Xt[rows]).squeeze(1), yt[rows]
            ).backward()
            opt.step()
    return net


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default_credit", "breast"])
def test_fedavg_mlp_matches_central_training(shared_data: Path, name: str) -> None:
    torch.set_num_threads(1)
    rounds, epochs, batch, lr = SETTINGS[name]
    parts, X_test, y_test = load(shared_data, name)
    params = FedAvgParams(rounds=rounds, local_epochs=epochs, batch_size=batch, learning_rate=lr)
    result, _ = run_fedavg(parts, lambda _: MlpLearner(SPEC), params)
    fed = roc_auc_score(y_test, MlpLearner(SPEC).predict(result.params, X_test))
    X, y = union(parts)
    net = central_network(X, y, rounds * epochs, batch, lr, seed=params.seed)
    with torch.no_grad():
        central = roc_auc_score(y_test, torch.sigmoid(net(torch.tensor(X_test).float())).squeeze(1))
    assert abs(fed - central) <= 0.01, (fed, central)


def test_federated_and_central_runs_start_from_the_same_network() -> None:
    ref = torch.nn.utils.parameters_to_vector(reference_net(23, 0).parameters())
    got = MlpLearner(SPEC).init_params(23, 0)
    np.testing.assert_array_equal(got, ref.detach().double().numpy())


def test_a_spec_is_data_not_code() -> None:
    for bad in ({"hidden": ()}, {"activation": "os.system"}, {"dropout": 1.0}, {"hidden": (0,)}):
        with pytest.raises(ConfigError):
            MlpSpec(**bad)  # type: ignore[arg-type]


def test_the_linear_path_does_not_import_torch() -> None:
    code = (
        "import sys, sharedml.fl.fedavg, sharedml.fl.linear, sharedml.fl.gbdt, sharedml.fl.dp; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

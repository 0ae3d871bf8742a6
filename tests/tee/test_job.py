"""``scheme: tee`` job specs through run_tee_job (a real enclave process over RA-TLS),
against a plaintext oracle written here from scikit-learn, XGBoost and torch.

The spec is the kind an MPC job runs — psi, split, fill, scale, train
(logistic regression, SecureBoost, and the MLP when torch is installed),
predict, evaluate with every metric. The oracle joins the two CSVs with
pandas, splits with scikit-learn's stratified splitter, fills and scales with
scikit-learn and trains each model itself; the released models, the released
scores and the reported metrics must equal it (scores within 1e-12).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sharedml.components import jobspec
from sharedml.errors import ConfigError
from sharedml.learn import metrics as m
from sharedml.tee.enclave.trainers import public_seed
from sharedml.tee.job import run_tee_job
from sharedml.tee.model import ReleasedModel

JOB = "credit-tee"
SEED = 42


def spec(shared_data: Path, steps: list[dict[str, object]], name: str = JOB,
         data: str = "default_credit_hetero") -> jobspec.JobSpec:
    return jobspec.load({
        "name": name,
        "scheme": "tee",
        "parties": {
            "guest": {"dataset": str(shared_data / f"{data}_guest.csv"), "label": "y"},
            "host": {"dataset": str(shared_data / f"{data}_host.csv")},
        },
        "steps": steps,
    })


def oracle(shared_data: Path) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Joined, split, filled (mean) and scaled (standard) as the spec says: (train, test, y_train, y_test)."""
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    g = pd.read_csv(shared_data / "default_credit_hetero_guest.csv").add_prefix("guest.")
    h = pd.read_csv(shared_data / "default_credit_hetero_host.csv").add_prefix("host.")
    joined = g.merge(h, left_on="guest.id", right_on="host.id").sort_values("guest.id")
    joined = joined.rename(columns={"guest.id": "id"}).drop(columns=["host.id"]).reset_index(drop=True)
    y = joined.pop("guest.y").to_numpy()
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=SEED, stratify=y)
    x = joined.drop(columns=["id"])
    tr, te = x.iloc[np.sort(train)], x.iloc[np.sort(test)]
    for model in (SimpleImputer(strategy="mean"), StandardScaler()):
        model.fit(tr)
        tr = pd.DataFrame(model.transform(tr), columns=x.columns)
        te = pd.DataFrame(model.transform(te), columns=x.columns)
    te.insert(0, "id", joined["id"].iloc[np.sort(test)].to_numpy())
    return tr, te, y[np.sort(train)], y[np.sort(test)]


def oracle_scores(model: str, tr: pd.DataFrame, te: pd.DataFrame, y: np.ndarray, job: str = JOB) -> np.ndarray:
    """Each model trained outside, by the libraries directly, scored on the test rows."""
    if model == "logistic_regression":
        from sharedml.learn.linear._core import plaintext_sgd

        mean, std = tr.to_numpy().mean(axis=0), tr.to_numpy().std(axis=0)
        scale = np.where(std > 0, std, 1.0)
        w, b = plaintext_sgd((tr.to_numpy() - mean) / scale, y.astype(float), task="classification",
                             epochs=3, batch_size=1024, eta0=2.0, schedule="cosine", l2=1e-4,
                             seed=public_seed(job, "train"))
        z = (te[tr.columns].to_numpy() - mean) / scale @ w + b
        return 1.0 / (1.0 + np.exp(-z))
    import xgboost as xgb

    clf = xgb.XGBClassifier(n_estimators=12, max_depth=4, max_bin=32, learning_rate=0.3,
                            tree_method="hist", random_state=int.from_bytes(public_seed(job, "train2")[:4], "little"))
    clf.fit(tr.to_numpy(), y)
    return clf.predict_proba(te[tr.columns].to_numpy())[:, 1]


STEPS: list[dict[str, Any]] = [
    {"psi": {"key": "id"}},
    {"split": {"test_size": 0.3, "seed": SEED}},
    {"fill": {"strategy": "mean"}},
    {"scale": {"method": "standard"}},
    {"train": {"model": "logistic_regression", "epochs": 3}},
    {"evaluate": {}},
    {"train": {"model": "secureboost", "n_estimators": 12, "max_depth": 4}},
    {"predict": {}},
    {"evaluate": {}},
]


@pytest.mark.slow
def test_tee_job_matches_plaintext(shared_data: Path, tmp_path: Path) -> None:
    result = run_tee_job(spec(shared_data, STEPS), tmp_path)
    assert json.loads((tmp_path / "result.json").read_text()) == result
    by_id = {s["id"]: s for s in result["steps"]}
    assert [s["id"] for s in result["steps"]][:2] == ["enclave", "upload"] and result["steps"][-1]["id"] == "destroy"
    assert set(by_id["upload"]["parties"]) == {"guest", "host"}
    tr, te, y_tr, y_te = oracle(shared_data)
    assert by_id["split"]["parties"]["enclave"]["metrics"] == {"train_rows": len(tr), "test_rows": len(te)}
    for model, train_id, eval_id in (("logistic_regression", "train", "evaluate"),
                                     ("secureboost", "train2", "evaluate2")):
        expected = oracle_scores(model, tr, te, y_tr)
        released = ReleasedModel.from_bytes(Path(by_id[train_id]["parties"]["enclave"]["artifacts"]["model"]).read_bytes())
        np.testing.assert_allclose(released.predict(te), expected, rtol=0, atol=1e-12)
        scores = pd.read_csv(by_id[eval_id]["parties"]["enclave"]["artifacts"]["predictions"])
        assert scores["id"].tolist() == te["id"].tolist()
        np.testing.assert_allclose(scores["score"], expected, rtol=0, atol=1e-12)
        reported = by_id[eval_id]["parties"]["enclave"]["metrics"]
        assert set(reported) == {*m.CLASSIFICATION, "charts"}  # charts: the console's summary
        for name, value in m.evaluate(y_te, expected, "classification").items():
            assert reported[name] == pytest.approx(value, abs=1e-6), name  # reported to 6 decimals
    assert by_id["evaluate"]["parties"]["enclave"]["metrics"]["auc"] > 0.70  # reference: LR 0.72, XGB 0.78


@pytest.mark.slow
def test_tee_mlp_matches_torch_outside(shared_data: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    steps = [{"psi": {}}, {"split": {"test_size": 0.3, "seed": SEED}}, {"scale": {}},
             {"train": {"model": "mlp", "hidden_layer_sizes": [16, 8], "epochs": 2,
                        "batch_size": 512, "optimizer": "adam", "learning_rate": 0.01}},
             {"evaluate": {}}]
    result = run_tee_job(spec(shared_data, steps), tmp_path)
    by_id = {s["id"]: s for s in result["steps"]}
    tr, te, y_tr, y_te = oracle(shared_data)
    released = ReleasedModel.from_bytes(Path(by_id["train"]["parties"]["enclave"]["artifacts"]["model"]).read_bytes())
    expected = _torch_mlp(torch, tr, te, y_tr)
    np.testing.assert_allclose(released.predict(te), expected, rtol=0, atol=1e-12)
    scores = pd.read_csv(by_id["evaluate"]["parties"]["enclave"]["artifacts"]["predictions"])
    np.testing.assert_allclose(scores["score"], expected, rtol=0, atol=1e-12)
    assert by_id["evaluate"]["parties"]["enclave"]["metrics"]["auc"] == pytest.approx(
        m.roc_auc(y_te, expected), abs=1e-6)


def _torch_mlp(torch: Any, tr: pd.DataFrame, te: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """The MLP written out with torch: the enclave's init seed, batch plan and AdamW with decay on weights."""
    from sharedml.learn.linear._core import batch_plan

    seed = public_seed(JOB, "train")
    x = tr.to_numpy()
    mean, std = x.mean(axis=0), x.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    torch.manual_seed(int.from_bytes(seed[:8], "little") & (2**63 - 1))
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 16, dtype=torch.float64), torch.nn.ReLU(),
                              torch.nn.Linear(16, 8, dtype=torch.float64), torch.nn.ReLU(),
                              torch.nn.Linear(8, 1, dtype=torch.float64))
    decay = [p for n, p in net.named_parameters() if n.endswith("weight")]
    rest = [p for n, p in net.named_parameters() if n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4}, {"params": rest, "weight_decay": 0.0}],
                            lr=0.01, betas=(0.9, 0.999), eps=1e-3)
    xt, yt = torch.from_numpy((x - mean) / scale), torch.from_numpy(y.astype(float))
    for epoch in range(2):
        for idx in batch_plan(len(y), 512, seed, epoch):
            opt.zero_grad()
            rows = torch.from_numpy(idx)
            torch.nn.BCEWithLogitsLoss()(net(xt[rows]).squeeze(1), yt[rows]).backward()
            opt.step()
    with torch.no_grad():
        out = net(torch.from_numpy((te[tr.columns].to_numpy() - mean) / scale)).squeeze(1)
    return torch.sigmoid(out).numpy()


def test_unsupported_step_is_a_config_error(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not available in the TEE scheme"):
        run_tee_job(spec(shared_data, [{"psi": {}}, {"cv": {"train": {"model": "secureboost"}}}]), tmp_path)
    assert not (tmp_path / "tee").exists()  # refused before any enclave started


@pytest.mark.parametrize(
    ("step", "named"),
    [({"train": {"model": "logistic_regression", "protocol": "he"}}, "protocol"),
     ({"train": {"model": "secureboost", "key_bits": 3072}}, "key_bits"),
     ({"psi": {"protocol": "ecdh"}}, "protocol"),
     ({"split": {"layout": "horizontal"}}, "layout"),
     ({"woe": {"key_bits": 4096}}, "key_bits")],
    ids=["protocol", "key_bits", "psi-protocol", "horizontal", "woe-key_bits"],
)
def test_parameters_the_enclave_would_ignore_are_refused(
    shared_data: Path, tmp_path: Path, step: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as info:
        run_tee_job(spec(shared_data, [step]), tmp_path)
    assert info.value.step is not None  # names the step
    assert not (tmp_path / "tee").exists()  # refused before any enclave started

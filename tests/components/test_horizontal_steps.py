"""Horizontal train, predict and evaluate as job steps (issue 16 item 5).

Three banks hold the same columns of different customers
(``default_credit_homo_{guest,host_1,host_2}``). A spec with ``layout:
horizontal`` runs through :func:`sharedml.standalone.run_job` (threads here;
the platform test runs processes): every party ends with the same model file,
the evaluate step's pooled metrics equal the metrics of the pooled scores
(within the histogram's stated tie bound), FedAvg's AUC is within 0.01 of
scikit-learn's on the union of the training rows, and with DP the result
records the ε that ``dp_accounting`` gives for the run's parameters. Spec
mistakes are refused when the spec loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sharedml.components import jobspec
from sharedml.components.dealer import helper_role, needs_dealer
from sharedml.errors import ConfigError, DataError
from sharedml.fl.dp import epsilon
from sharedml.fl.model import HorizontalModel
from sharedml.standalone import run_job
from sharedml.standalone.options import PartyFailed

BANKS = ("guest", "host_1", "host_2")


def spec(data: Path, *steps: dict[str, Any], files: dict[str, str] | None = None) -> dict[str, Any]:
    files = files or {b: str(data / f"default_credit_homo_{b}.csv") for b in BANKS}
    return {
        "name": "three-banks",
        "parties": {b: {"dataset": f, "label": "y"} for b, f in files.items()},
        "steps": [{"split": {"layout": "horizontal", "test_size": 0.25, "seed": 7}}, *steps],
    }


def metrics(result: dict[str, Any], step: str) -> dict[str, dict[str, Any]]:
    entry = next(s for s in result["steps"] if s["id"] == step)
    return {p: r["metrics"] for p, r in entry["parties"].items()}


def split_rows(data: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The union of the banks' training rows and of their test rows, as the horizontal
    split of :func:`spec` cuts them (seeded, stratified), and each bank's cut."""
    from sklearn.model_selection import train_test_split

    parts = {b: pd.read_csv(data / f"default_credit_homo_{b}.csv") for b in BANKS}
    cut = {b: train_test_split(np.arange(len(f)), test_size=0.25, random_state=7,
                               stratify=f["y"]) for b, f in parts.items()}
    rows = pd.concat([parts[b].iloc[np.sort(cut[b][0])] for b in BANKS])
    test = pd.concat([parts[b].iloc[np.sort(cut[b][1])] for b in BANKS])
    return rows, test, cut


def test_fedavg_lr_job_every_party_holds_the_model_and_pooled_metrics_are_exact(
    shared_data: Path, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score

    train = {"layout": "horizontal", "model": "logistic_regression", "rounds": 8,
             "learning_rate": 0.1, "batch_size": 64}
    job = spec(shared_data, {"train": train}, {"predict": {"layout": "horizontal"}},
               {"evaluate": {"layout": "horizontal"}})
    result = run_job(job, tmp_path, embedded=True, timeout=300)

    models = {p: HorizontalModel.load(tmp_path / p / "model-train.json")
              for p in (*BANKS, "aggregator")}
    first = np.asarray(models["guest"].fit)
    assert all(np.array_equal(np.asarray(m.fit), first) for m in models.values())

    rows, test, cut = split_rows(shared_data)
    cols = list(models["guest"].columns)
    scores = models["guest"].predict(test[cols].to_numpy(float))
    pooled_auc = roc_auc_score(test["y"], scores)

    ev = metrics(result, "evaluate")
    assert {m["auc"] for m in ev.values()} == {ev["guest"]["auc"]}  # everyone, the same
    assert ev["guest"]["rows"] == len(test) and ev["guest"]["parties"] == 3
    assert abs(ev["guest"]["auc"] - pooled_auc) <= ev["guest"]["auc_bound"] + 1e-6
    assert ev["guest"]["logloss"] == pytest.approx(log_loss(test["y"], scores), abs=1e-5)
    # each party's predictions file holds its own rows only
    own = pd.read_csv(tmp_path / "host_1" / "predictions-predict.csv")
    assert len(own) == len(cut["host_1"][1])

    central = LogisticRegression(max_iter=1000).fit(rows[cols], rows["y"])
    central_auc = roc_auc_score(test["y"], central.predict_proba(test[cols])[:, 1])
    print(f"FedAvg LR job AUC {ev['guest']['auc']:.4f}, scikit-learn on the union {central_auc:.4f}")
    assert ev["guest"]["auc"] == pytest.approx(central_auc, abs=0.01)

    tr = metrics(result, "train")
    assert tr["aggregator"]["role"] == "aggregator" and tr["aggregator"]["rounds"] == 8
    assert tr["guest"]["validation_auc"] == tr["aggregator"]["validation_auc"]
    assert not any(k.startswith("dp_") for k in tr["guest"])
    history = json.loads((tmp_path / "aggregator" / "rounds-train.json").read_text())
    assert [r["round"] for r in history] == list(range(8))


def test_dp_and_trees_record_what_they_should(shared_data: Path, tmp_path: Path) -> None:
    dp = {"layout": "horizontal", "model": "logistic_regression", "rounds": 3,
          "dp_clip": 0.5, "dp_noise_multiplier": 1.3, "dp_delta": 1e-6, "max_dropouts": 1}
    trees = {"layout": "horizontal", "model": "gbdt", "n_estimators": 4, "max_depth": 3}
    job = spec(shared_data, {"id": "dp", "train": dp}, {"id": "trees", "train": trees},
               {"evaluate": {"layout": "horizontal", "metrics": ["auc"]}})
    result = run_job(job, tmp_path, embedded=True, timeout=300)

    expected = epsilon([1.3] * 3, 1e-6)  # dp_accounting's RDP accountant
    for party, m in metrics(result, "dp").items():
        assert m["dp_epsilon"] == pytest.approx(expected, rel=1e-9), party
        assert (m["dp_delta"], m["dp_clip"], m["dp_noise_multiplier"]) == (1e-6, 0.5, 1.3)
    ev = metrics(result, "evaluate")
    assert set(ev["guest"]) == {"auc", "rows", "parties"}  # the metrics asked for
    assert ev["guest"]["auc"] > 0.7  # the trees (the step before), not the DP model
    assert metrics(result, "trees")["host_2"]["trees"] == 4


@pytest.mark.parametrize("aggregator", [None, "guest"])
def test_a_party_with_other_columns_stops_the_job_naming_it(
    shared_data: Path, tmp_path: Path, aggregator: str | None
) -> None:
    """8.3-2: the job stops with the error naming the party, also when a bank aggregates
    (its aggregator side's error reaches its client side instead of a hang)."""
    odd = pd.read_csv(shared_data / "default_credit_homo_host_2.csv").drop(columns=["x3"])
    odd.to_csv(tmp_path / "odd.csv", index=False)
    files = {b: str(shared_data / f"default_credit_homo_{b}.csv") for b in BANKS}
    files["host_2"] = str(tmp_path / "odd.csv")
    train = {"layout": "horizontal", "model": "logistic_regression", "rounds": 2,
             **({"aggregator": aggregator} if aggregator else {})}
    job = spec(shared_data, {"train": train}, files=files)
    with pytest.raises(PartyFailed) as info:
        run_job(job, tmp_path / "out", embedded=True, timeout=60)
    err = info.value.error
    assert isinstance(err, DataError) and "host_2" in str(err) and "columns" in str(err)


@pytest.mark.parametrize(("steps", "says"), [
    # horizontal training after PSI: vertical rows
    ([{"psi": {}}, {"split": {}}, {"train": {"layout": "horizontal", "model": "mlp"}}],
     "each party's own rows"),
    # a vertical evaluate of a horizontal model
    ([{"split": {"layout": "horizontal"}}, {"train": {"layout": "horizontal",
                                                       "model": "gbdt"}}, {"evaluate": {}}],
     "layout: horizontal"),
    ([{"split": {"layout": "horizontal"}},
      {"train": {"layout": "horizontal", "model": "logistic_regression", "protocol": "he"}}],
     "no protocol"),
    ([{"split": {"layout": "horizontal"}},
      {"train": {"layout": "horizontal", "model": "secureboost"}}], "model: gbdt"),
    ([{"psi": {}}, {"split": {}}, {"train": {"model": "gbdt"}}], "layout: horizontal"),
    ([{"split": {"layout": "horizontal"}},
      {"train": {"layout": "horizontal", "model": "gbdt", "rounds": 3}}], "rounds"),
    ([{"split": {"layout": "horizontal"}},
      {"train": {"layout": "horizontal", "model": "mlp", "dp_clip": 1.0}}],
     "dp_noise_multiplier"),
])
def test_spec_mistakes_are_refused_when_it_loads(steps: list[dict[str, Any]], says: str) -> None:
    raw = {"parties": {b: {"dataset": f"{b}.csv", "label": "y"} for b in BANKS}, "steps": steps}
    with pytest.raises(ConfigError) as info:
        jobspec.load(raw)
    assert says in f"{info.value.message} {info.value.remedy}"


HORIZONTAL_LR = [{"split": {"layout": "horizontal"}},
                 {"train": {"layout": "horizontal", "model": "logistic_regression"}}]


@pytest.mark.parametrize(("parties", "train", "says"), [
    (BANKS, {"max_dropouts": 2}, "leaves no majority"),
    (BANKS, {"neighbours": 3}, "must be even"),
    (BANKS[:1], {}, "at least two data parties"),
    (BANKS, {"aggregator": "bank_z"}, "'bank_z' is not a party"),
    ((*BANKS, "nolabel"), {}, "['nolabel'] declare none"),
])
def test_what_the_parties_cannot_run_is_refused_when_it_loads(
    parties: tuple[str, ...], train: dict[str, Any], says: str
) -> None:
    """The spec's parties against the step (issue 11 item 9): before any party starts."""
    raw = {"parties": {p: {"dataset": f"{p}.csv", **({} if p == "nolabel" else {"label": "y"})}
                       for p in parties},
           "steps": [HORIZONTAL_LR[0], {"train": {**HORIZONTAL_LR[1]["train"], **train}}]}
    with pytest.raises(ConfigError) as info:
        jobspec.load(raw)
    assert says in info.value.message and info.value.step == "train"
    assert "steps[1] (train)" in info.value.message


def test_a_horizontal_job_gets_an_aggregator_and_no_dealing() -> None:
    raw = {"parties": {b: {"dataset": f"{b}.csv", "label": "y"} for b in BANKS},
           "steps": [{"split": {"layout": "horizontal"}},
                     {"train": {"layout": "horizontal", "model": "linear_regression"}},
                     {"predict": {"layout": "horizontal"}}]}
    loaded = jobspec.load(raw)
    assert needs_dealer(loaded) and helper_role(loaded) == "aggregator"
    raw["steps"][1]["train"]["aggregator"] = "guest"  # a data party aggregates: no helper
    assert not needs_dealer(jobspec.load(raw))


def test_a_data_party_aggregates_without_a_helper(shared_data: Path, tmp_path: Path) -> None:
    """``aggregator: guest`` (issue 16): the guest runs the client and the aggregator
    sides, no helper process starts, every bank ends with the same model, and the pooled
    evaluation is that model's on the union of the test rows, within 0.01 AUC of
    scikit-learn's on the union of the training rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    train = {"layout": "horizontal", "model": "logistic_regression", "rounds": 6,
             "aggregator": "guest"}
    job = spec(shared_data, {"train": train}, {"predict": {"layout": "horizontal"}},
               {"evaluate": {"layout": "horizontal", "aggregator": "guest"}})
    result = run_job(job, tmp_path, embedded=True, timeout=300)

    tr, ev = metrics(result, "train"), metrics(result, "evaluate")
    assert set(tr) == set(ev) == set(BANKS)  # no helper party took part
    assert tr["guest"]["role"] == "client and aggregator" and tr["guest"]["rounds"] == 6
    assert tr["host_1"]["validation_auc"] == tr["guest"]["validation_auc"]
    history = json.loads((tmp_path / "guest" / "aggregator" / "rounds-train.json").read_text())
    assert [r["survivors"] for r in history] == [list(BANKS)] * 6
    models = [HorizontalModel.load(tmp_path / b / "model-train.json") for b in BANKS]
    assert all(np.array_equal(np.asarray(m.fit), np.asarray(models[0].fit)) for m in models)

    rows, test, _ = split_rows(shared_data)
    cols = list(models[0].columns)
    pooled_auc = roc_auc_score(test["y"], models[0].predict(test[cols].to_numpy(float)))
    assert ev["guest"].pop("role") == "client and aggregator"
    assert all(m == ev["guest"] for m in ev.values()) and ev["guest"]["rows"] == len(test)
    assert abs(ev["guest"]["auc"] - pooled_auc) <= ev["guest"]["auc_bound"] + 1e-6
    central = LogisticRegression(max_iter=1000).fit(rows[cols], rows["y"])
    central_auc = roc_auc_score(test["y"], central.predict_proba(test[cols])[:, 1])
    assert ev["guest"]["auc"] == pytest.approx(central_auc, abs=0.01)


def test_components_show_train_documents_every_horizontal_parameter() -> None:
    from sharedml.components.cli import parameters
    from sharedml.fl.declared import HORIZONTAL

    rows = {r["name"]: r for r in parameters("train")}
    assert "horizontal" in rows["layout"]["type"] and "gbdt" in rows["model"]["type"]
    for model, declaration in HORIZONTAL.items():
        for name, param in declaration.params.items():
            assert name in rows, f"{model}: {name} is not in the train schema"
            assert param.description in rows[name]["description"], (model, name)
            assert f"{model} (horizontal)" in rows[name]["description"], (model, name)


def test_the_example_spec_runs_on_the_reference_data(shared_data: Path, tmp_path: Path) -> None:
    """examples/three_banks_fedavg.yaml names the vendored files; run on the fixture's."""
    import yaml

    example = Path(__file__).resolve().parents[2] / "examples" / "three_banks_fedavg.yaml"
    raw = yaml.safe_load(example.read_text())
    for party in raw["parties"].values():
        named = Path(party["dataset"]).name
        assert (example.parent / party["dataset"]).resolve().name == named
        party["dataset"] = str(shared_data / named)
    result = run_job(raw, tmp_path, embedded=True, timeout=300)
    ev = metrics(result, "evaluate")
    assert set(ev) == {*raw["parties"], "aggregator"}
    assert len({(m["auc"], m["rows"]) for m in ev.values()}) == 1
    assert ev["bank_a"]["rows"] == 6000 and ev["bank_a"]["auc"] > 0.70  # sklearn: 0.7296


def test_mlp_and_linear_regression_jobs_on_breast_homo(shared_data: Path, tmp_path: Path) -> None:
    """The two other FedAvg models through the steps: every party's MLP file scores
    rows alike, and both pooled evaluations are those of a model that learnt."""
    pytest.importorskip("torch")
    files = {p: str(shared_data / f"breast_homo_{p}.csv") for p in ("guest", "host")}
    mlp = {"layout": "horizontal", "model": "mlp", "hidden_layer_sizes": [8], "rounds": 6,
           "learning_rate": 0.05, "seed": 3}
    lin = {"layout": "horizontal", "model": "linear_regression", "rounds": 6}
    job = spec(shared_data, {"train": mlp}, {"evaluate": {"layout": "horizontal"}},
               {"id": "lin", "train": lin}, {"id": "ev_lin", "evaluate": {"layout": "horizontal"}},
               files=files)
    result = run_job(job, tmp_path, embedded=True, timeout=300)

    rows = pd.read_csv(files["guest"]).filter(like="x").to_numpy(float)[:50]
    scored = [HorizontalModel.load(tmp_path / p / "model-train.json").predict(rows)
              for p in ("guest", "host", "aggregator")]
    assert all(np.array_equal(s, scored[0]) for s in scored)
    ev, ev_lin = metrics(result, "evaluate"), metrics(result, "ev_lin")
    assert ev["guest"] == ev["host"] and ev["guest"]["auc"] > 0.95  # sklearn on the union: 0.99
    assert ev_lin["guest"] == ev_lin["host"] and {"rmse", "r2"} <= set(ev_lin["guest"])
    assert ev_lin["guest"]["r2"] > 0.5  # least squares on 0/1 labels of a separable set


def test_a_horizontal_model_is_registered_and_scores_new_rows_by_name(
    shared_data: Path, tmp_path: Path
) -> None:
    """A horizontal train registers a version whose parts are the banks' (never the
    aggregator's); a scoring job with no train names it as ``three-banks@production``
    and each bank scores its new rows from its own sealed part, exactly as the
    training job's model file does."""
    from sharedml.standalone.models import LocalRegistry

    models = tmp_path / "models"
    train = {"layout": "horizontal", "model": "logistic_regression", "rounds": 3}
    run_job(spec(shared_data, {"train": train}), tmp_path / "train", embedded=True,
            timeout=300, models=models)
    book = LocalRegistry(models)
    book.tag("three-banks@1", "production")
    shown = book.show("three-banks@production")
    assert sorted(shown["fingerprints"]) == sorted(BANKS)

    new = {b: tmp_path / f"new_{b}.csv" for b in BANKS}
    for b, path in new.items():
        pd.read_csv(shared_data / f"default_credit_homo_{b}.csv").head(40).to_csv(path, index=False)
    scoring = {"name": "scoring", "parties": {b: {"dataset": str(new[b]), "label": "y"}
                                              for b in BANKS},
               "steps": [{"predict": {"layout": "horizontal",
                                      "model": "three-banks@production"}}]}
    result = run_job(scoring, tmp_path / "score", embedded=True, timeout=300, models=models)
    assert set(metrics(result, "predict")) == set(BANKS)  # no helper: nothing to sum
    trained = HorizontalModel.load(tmp_path / "train" / "guest" / "model-train.json")
    for b in BANKS:
        got = pd.read_csv(tmp_path / "score" / b / "predictions-predict.csv")
        rows = pd.read_csv(new[b])
        want = trained.predict(rows[list(trained.columns)].to_numpy(float))
        assert len(got) == 40 and np.array_equal(got["score"].to_numpy(), want), b

"""``sharedml run``: a job spec run by every party, as threads and as mTLS processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sharedml.components import jobspec
from sharedml.errors import ConfigError, DataError
from sharedml.learn import metrics
from sharedml.scenarios.credit import credit_population
from sharedml.standalone import PartyFailed
from sharedml.standalone.job import run_job, run_job_reporting_cause

REPO = Path(__file__).resolve().parents[1]
BANK_COLS = ["age", "income", "utilisation", "late_payments_12m", "tenure_years"]
PARTNER_COLS = ["orders_90d", "returns_rate", "bnpl_share", "night_orders_share"]


def _spec(steps: list[dict[str, Any]], partner: str = "data/credit_partner.csv") -> dict[str, Any]:
    return {
        "name": "runner-test",
        "parties": {
            "bank": {"dataset": "data/credit_bank.csv", "label": "y"},
            "partner": {"dataset": partner},
        },
        "steps": steps,
    }


FRONT = [
    {"psi": {"key": "id"}},
    {"split": {"test_size": 0.3, "stratify": "y", "seed": 42}},
    {"scale": {"method": "standard"}},
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A job folder with the generated credit book, small enough for tests."""
    root = tmp_path_factory.mktemp("job")
    credit_population(rows=1500).write(root / "data")
    return root


def _labels(folder: Path) -> pd.Series:
    bank = pd.read_csv(folder / "data" / "credit_bank.csv", dtype={"id": str})
    return bank.set_index("id")["y"]


def test_embedded_run_writes_every_step_for_every_party(folder: Path, model_doc: Any) -> None:
    steps = [
        *FRONT,
        {"id": "train_lr", "train": {"model": "logistic_regression", "protocol": "ss",
                                     "epochs": 3, "batch_size": 128}},
        {"id": "evaluate_lr", "evaluate": {"metrics": ["auc", "ks"]}},
        {"id": "train_sb", "train": {"model": "secureboost", "protocol": "ss",
                                     "n_estimators": 2, "max_depth": 2, "n_bins": 8}},
        {"id": "evaluate_sb", "evaluate": {"metrics": ["auc"]}},
    ]
    out = folder / "out-embedded"
    result = run_job(_spec(steps), out, embedded=True, base=folder)

    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    ids = ["psi", "split", "scale", "train_lr", "evaluate_lr", "train_sb", "evaluate_sb"]
    assert [s["id"] for s in on_disk["steps"]] == ids
    for step in on_disk["steps"]:
        assert {"bank", "partner"} <= set(step["parties"]), step["id"]
        # the dealer the runner added serves the secret-shared training steps only
        assert ("dealer" in step["parties"]) == step["id"].startswith("train")
        for party in ("bank", "partner"):
            assert step["parties"][party]["seconds"] >= 0
    by_id = {s["id"]: s["parties"] for s in on_disk["steps"]}
    assert by_id["psi"]["bank"]["metrics"]["intersection"] == by_id["psi"]["partner"]["metrics"][
        "intersection"
    ]
    assert by_id["evaluate_lr"]["partner"]["metrics"] == {}  # metrics at the label holder only
    assert by_id["train_lr"]["dealer"]["metrics"]["requests"] > 0

    # each party's model files hold that party's part only
    def part(step: str, party: str) -> dict[str, Any]:
        return model_doc(by_id[step][party]["artifacts"]["model"])

    lr_bank, lr_partner = part("train_lr", "bank"), part("train_lr", "partner")
    assert len(lr_bank["part"]["coef"]) == 5 and lr_bank["part"]["intercept"] is not None
    assert len(lr_partner["part"]["coef"]) == 4 and lr_partner["part"]["intercept"] is None
    sb_bank, sb_partner = part("train_sb", "bank"), part("train_sb", "partner")
    assert "trees" in sb_bank and "trees" not in sb_partner and "base_score" not in sb_partner
    owners = [o for tree in sb_bank["trees"] for o in tree["owner"] if o]
    for doc, party in ((sb_bank, "bank"), (sb_partner, "partner")):
        assert len(doc["split_table"]["thresholds"]) == owners.count(party)
    for party, others in (("bank", PARTNER_COLS), ("partner", [*BANK_COLS, "y"])):
        for path in (out / party).iterdir():
            text = path.read_text()
            assert not any(f'"{c}"' in text for c in others), (party, path.name)
    assert not list((out / "partner").glob("predictions-*"))

    # the second evaluate scored the trees (its own predictions), not the first model's
    labels = _labels(folder)
    for step_id in ("evaluate_lr", "evaluate_sb"):
        scores = pd.read_csv(out / "bank" / f"predictions-{step_id}.csv", dtype={"id": str})
        auc = metrics.roc_auc(labels.loc[scores["id"]].to_numpy(), scores["score"].to_numpy())
        assert by_id[step_id]["bank"]["metrics"]["auc"] == pytest.approx(auc, abs=1e-6)


@pytest.mark.slow
def test_example_spec_runs_as_processes_with_progress(folder: Path, tmp_path: Path) -> None:
    shutil.copy(REPO / "examples" / "credit_ss_lr.yaml", tmp_path / "job.yaml")
    shutil.copytree(folder / "data", tmp_path / "data")
    seen: list[tuple[str, str, float, str]] = []
    result = run_job(tmp_path / "job.yaml", tmp_path / "out",
                     progress=lambda *item: seen.append(item))

    spec = jobspec.load(tmp_path / "job.yaml")
    ids = [s.id for s in spec.parsed_steps()]
    assert [s["id"] for s in result["steps"]] == ids
    assert all({"bank", "partner"} <= set(s["parties"]) for s in result["steps"])
    assert {"auc", "ks", "lift", "accuracy"} <= set(result["steps"][-1]["parties"]["bank"]["metrics"])
    for party in ("bank", "partner"):  # each party's part, sealed in the models folder
        assert list((tmp_path / "out" / "models" / party / "parts").glob("*.smp"))
    # progress came back from both party processes: public tuples, every step finished
    assert all(isinstance(p, str) and isinstance(s, str) and isinstance(f, float)
               and isinstance(m, str) for p, s, f, m in seen)
    for party in ("bank", "partner"):
        assert {s for p, s, f, _ in seen if p == party and f == 1.0} == set(ids)


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([*FRONT, {"frobnicate": {}}], "steps[3]"),
        ([*FRONT, {"train": {"model": "logistic_regression", "epochs": 0}}], "steps[3].train.epochs"),
        ([{"psi": {"key": "id"}}, {"split": {"test_size": 1.5}}], "steps[1].split.test_size"),
        ([*FRONT, {"train": {"model": "random_forest"}}], "steps[3].train.model"),
    ],
)
def test_bad_spec_is_refused_before_any_party_starts(
    folder: Path, tmp_path: Path, steps: list[dict[str, Any]], field: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        run_job(_spec(steps), out, embedded=True, base=folder)
    assert field in str(info.value)
    assert not out.exists()  # no party ran, nothing was written


def test_missing_dataset_fails_naming_party_and_step(folder: Path, tmp_path: Path) -> None:
    spec = _spec(FRONT, partner="data/nowhere.csv")
    with pytest.raises(PartyFailed) as info:
        run_job(spec, tmp_path / "out", embedded=True, base=folder)
    assert info.value.party == "partner"
    with pytest.raises(DataError) as cause:
        run_job_reporting_cause(spec, tmp_path / "out", embedded=True, base=folder)
    text = str(cause.value)
    assert "nowhere.csv" in text and "not found" in text
    assert "party 'partner'" in text and "step 'psi" in text


@pytest.mark.slow
def test_malformed_dataset_fails_the_process_run_and_the_command(
    folder: Path, tmp_path: Path
) -> None:
    partner = pd.read_csv(folder / "data" / "credit_partner.csv", dtype={"id": str})
    partner["bnpl_share"] = partner["bnpl_share"].astype(object)
    partner.loc[7, "bnpl_share"] = "n/a"
    (tmp_path / "data").mkdir()
    shutil.copy(folder / "data" / "credit_bank.csv", tmp_path / "data")
    partner.to_csv(tmp_path / "data" / "credit_partner.csv", index=False)
    (tmp_path / "job.yaml").write_text(json.dumps(_spec(FRONT)))

    proc = subprocess.run(
        [sys.executable, "-c", "from sharedml.cli import main; main()", "run",
         str(tmp_path / "job.yaml"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "error:" in said and "bnpl_share" in said
    assert "party 'partner'" in said and "step 'psi" in said
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "out" / "result.json").exists()


def test_the_runner_and_the_platform_decide_and_serve_the_dealer_with_the_same_code() -> None:
    """One dealer decision for ``sharedml run`` and the platform's scheduler (no copies)."""
    import sharedml.standalone.job as runner
    from sharedml.components import dealer
    from sharedml.platform import job_plan

    assert runner.needs_dealer is dealer.needs_dealer is job_plan.needs_dealer
    assert dealer.dealer_name(["bank", "dealer", "dealer2"]) == "dealer3"
    spec = _spec([{"psi": {}}, {"split": {}},
                  {"train": {"model": "logistic_regression", "protocol": "he"}}])
    assert not dealer.needs_dealer(jobspec.load(spec))
    spec["steps"][2]["train"]["protocol"] = "ss"
    assert dealer.needs_dealer(jobspec.load(spec))


def test_the_runner_sends_its_dealer_only_the_steps_whose_roles_name_it(
    folder: Path, tmp_path: Path
) -> None:
    """As the platform plans a dealer task per step it takes part in
    (``components/dealer.takes_part``), ``sharedml run``'s dealer is sent nothing of
    psi, split, scale or describe — not even an end-of-step marker."""
    from sharedml.components.dealer import takes_part
    from sharedml.datasets import DatasetFiles
    from sharedml.standalone import run_in_threads
    from sharedml.standalone.job import PartyJob, _functions
    from sharedml.transport.recording import RecordingChannel, WireRecord

    spec = jobspec.load(_spec([*FRONT, {"correlation": {}}, {"describe": {}}]))
    steps = tuple(spec.parsed_steps())
    assert [s.id for s in steps if takes_part(s)] == ["correlation"]
    job = PartyJob(steps, spec.party_configs(), tmp_path, DatasetFiles(folder))
    log: list[WireRecord] = []
    fns = _functions(job, "dealer")
    out = run_in_threads(fns, list(fns), job=spec.name, timeout=60, dealer="dealer",
                         wrap=lambda c: RecordingChannel(c, log))
    with_dealer = [r for r in log if "dealer" in (r.frm, r.to)]
    assert with_dealer and {r.tag.split("/")[0] for r in with_dealer} == {"correlation"}
    assert [s["id"] for s in out["dealer"]["steps"]] == ["correlation"]
    assert out["dealer"]["steps"][0]["metrics"]["runtimes"] == 1
    assert [s["id"] for s in out["bank"]["steps"]] == [s.id for s in steps]

"""SecureBoost against XGBoost on the joined data (8.4-1), model files, bad input.

Tolerances: the shared model sees the same quantile bins XGBoost's ``hist``
builds from (up to sketch differences) and sums of g/h exact to 2^-24 (HE) or
the chosen fixed-point scale (SS), so it should land within 0.01 hold-out AUC
of XGBoost and within 5% of its RMSE; the gap left is the binning.
Key size does not change any result (plaintext arithmetic is exact), so the
HE tests use 1024-bit keys for time; the benchmark runs 2048.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from secureboost_harness import GUEST, HOST, run_rows, run_secureboost
from sklearn.metrics import roc_auc_score

from sharedml.errors import DataError, NotFittedError
from sharedml.learn.tree import SecureBoostClassifier, SecureBoostRegressor
from sharedml.standalone import PartyFailed

SETTINGS = {"n_estimators": 30, "max_depth": 3, "learning_rate": 0.3, "n_bins": 32}


def xgb_classifier(X, y, **extra):
    import xgboost as xgb

    return xgb.XGBClassifier(
        n_estimators=30, max_depth=3, learning_rate=0.3, max_bin=32, tree_method="hist", **extra
    ).fit(X, y)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("protocol", ["ss", "he"])
def test_credit_auc_matches_xgboost(credit, protocol):
    tr, te = credit.train, credit.test
    out = run_rows(
        SecureBoostClassifier,
        credit,
        tr,
        te,
        protocol=protocol,
        key_bits=1024,
        **SETTINGS,
    )
    assert out[HOST][1] is None
    auc = roc_auc_score(credit.y[te], out[GUEST][1])
    ref = xgb_classifier(credit.joined[tr], credit.y[tr])
    ref_auc = roc_auc_score(credit.y[te], ref.predict_proba(credit.joined[te])[:, 1])
    assert abs(auc - ref_auc) <= 0.01, (auc, ref_auc)
    # the host's features matter: the guest alone is clearly worse
    alone = xgb_classifier(credit.Xg[tr], credit.y[tr])
    alone_auc = roc_auc_score(credit.y[te], alone.predict_proba(credit.Xg[te])[:, 1])
    assert auc > alone_auc + 0.01
    hosts_splits = sum(t.owner.count(HOST) for t in out[GUEST][0].trees_)
    assert hosts_splits > 0 and len(out[HOST][0].table_) == hosts_splits


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["ss", "he"])
def test_motor_rmse_matches_xgboost(motor, protocol):
    import xgboost as xgb

    tr, te = motor.train, motor.test
    out = run_rows(
        SecureBoostRegressor,
        motor,
        tr,
        te,
        protocol=protocol,
        key_bits=1024,
        n_jobs=1,
        **SETTINGS,
    )
    rmse = float(np.sqrt(np.mean((out[GUEST][1] - motor.y[te]) ** 2)))
    ref = xgb.XGBRegressor(
        n_estimators=30, max_depth=3, learning_rate=0.3, max_bin=32, tree_method="hist"
    ).fit(motor.joined[tr], motor.y[tr])
    ref_rmse = float(np.sqrt(np.mean((ref.predict(motor.joined[te]) - motor.y[te]) ** 2)))
    assert rmse <= 1.05 * ref_rmse, (rmse, ref_rmse)
    assert rmse < 0.2 * motor.y[te].std()  # far better than the mean


@pytest.mark.parametrize("protocol", ["ss", pytest.param("he", marks=pytest.mark.slow)])
def test_early_stopping_sampling_and_model_files(credit, tmp_path: Path, protocol):
    small = credit.head(3000, 1000)
    tr, te = small.train, small.test
    val = tr[-600:]
    fit = tr[:-600]
    out = run_rows(
        SecureBoostClassifier,
        small,
        fit,
        te,
        protocol=protocol,
        key_bits=1024,
        val=(small.Xg[val], small.Xh[val], small.y[val]),
        n_estimators=60,
        max_depth=3,
        learning_rate=0.8,
        early_stopping_rounds=3,
        subsample=0.8,
        colsample_bytree=0.7,
        random_state=7,
    )
    guest, scores = out[GUEST]
    host = out[HOST][0]
    n_kept = len(guest.trees_)
    assert n_kept == guest.best_iteration_ + 1 < 60
    assert len(guest.validation_scores_) == n_kept + 3
    assert min(guest.validation_scores_) == guest.validation_scores_[guest.best_iteration_]
    assert roc_auc_score(small.y[te], scores) > 0.7

    # model files: each holds only its own part, and reload to the same scores
    guest.save(tmp_path / "guest.json")
    host.save(tmp_path / "host.json")
    host_text = (tmp_path / "host.json").read_text()
    guest_text = (tmp_path / "guest.json").read_text()
    assert '"trees"' not in host_text
    for t in host.table_.thresholds:
        assert repr(t) not in guest_text
    g2 = SecureBoostClassifier.load(tmp_path / "guest.json")
    h2 = SecureBoostClassifier.load(tmp_path / "host.json")

    from sharedml.standalone import run_in_threads

    rows = small.test[:50]
    again = run_in_threads(
        {
            GUEST: lambda s: (g2.predict(s, small.Xg[rows]), g2.predict_one(s, small.Xg[rows[0]])),
            HOST: lambda s: (h2.predict(s, small.Xh[rows]), h2.predict_one(s, small.Xh[rows[0]])),
        },
        [GUEST, HOST],
    )
    np.testing.assert_allclose(again[GUEST][0], scores[:50])
    assert again[GUEST][1] == pytest.approx(scores[0])
    assert again[HOST] == (None, None)


def test_model_file_version_is_checked(tmp_path: Path):
    path = tmp_path / "m.json"
    path.write_text(
        '{"format": "sharedml.secureboost", "kind": "SecureBoostClassifier", "version": 99}'
    )
    with pytest.raises(DataError, match="version"):
        SecureBoostClassifier.load(path)


def test_predict_before_fit_raises():
    from sharedml.session import Session
    from sharedml.transport import LocalHub

    session = Session(GUEST, (GUEST, HOST), LocalHub([GUEST, HOST]).channel(GUEST, "j"))
    with pytest.raises(NotFittedError):
        SecureBoostClassifier().predict(session, np.zeros((1, 2)))


def _bad(credit, which):
    tr = credit.train[:300]
    Xg, Xh, y = credit.Xg[tr].copy(), credit.Xh[tr].copy(), credit.y[tr].copy()
    if which == "nan":
        Xh[5, 2] = np.nan
    elif which == "constant":
        Xg[:, 1] = 3.0
    elif which == "labels":
        y[y == 1] = 2
    elif which == "rows":
        Xh = Xh[:-1]
    return Xg, Xh, y


@pytest.mark.parametrize(
    ("which", "party", "message"),
    [
        ("nan", HOST, "NaN"),
        ("constant", GUEST, "constant"),
        ("labels", GUEST, "0/1"),
        ("rows", GUEST, "different numbers of rows"),
    ],
)
@pytest.mark.parametrize("protocol", ["he", "ss"])
def test_bad_input_stops_every_party_before_training(credit, which, party, message, protocol):
    Xg, Xh, y = _bad(credit, which)
    with pytest.raises(PartyFailed) as info:
        run_secureboost(SecureBoostClassifier, Xg, Xh, y, Xg[:5], Xh[:5], protocol=protocol)
    err = info.value.error
    assert isinstance(err, DataError)
    assert message in str(err)
    if which != "rows":
        assert err.party == party and f"party {party!r}" in str(err)

"""Training behaviour both vertical MLPs share with the linear learners:
early stopping on joint validation scores, and bad input stopping every party
with the same clear error before any training (8.3-2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from sharedml.errors import DataError
from sharedml.learn import metrics
from sharedml.learn.nn import SplitMLPClassifier, SSMLPClassifier
from sharedml.standalone import PartyFailed, run_in_threads

MODELS = [
    pytest.param(lambda **kw: SSMLPClassifier(hidden_layer_sizes=[8], **kw), id="ss"),
    pytest.param(lambda **kw: SplitMLPClassifier(interactive_size=8, **kw), id="split"),
]


@pytest.mark.parametrize("make", MODELS)
def test_early_stopping_stops_and_keeps_the_best_epoch(
    vertical: Callable, run: Callable, make: Callable
) -> None:
    data = vertical("breast")
    kept: dict[str, Any] = {}
    params = dict(
        epochs=40, batch_size=64, learning_rate=0.5, early_stopping_rounds=2, random_state=4
    )
    out = run(lambda: make(**params), data, keep=kept, validation=True, dealer_runs=2)
    guest, host = kept["guest"], kept["host"]
    assert guest.n_epochs_ == host.n_epochs_ < 40
    assert len(guest.history_) == guest.n_epochs_ and host.history_ == []
    # the restored model is the best epoch's: its test AUC is the best validation AUC
    assert metrics.roc_auc(data.y_test, out["guest"]) == pytest.approx(
        max(guest.history_), abs=2e-3
    )


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize(
    ("case", "culprit", "match"),
    [("nan", "host", "NaN"), ("labels", "guest", "0/1"), ("rows", None, "rows")],
)
def test_bad_input_is_the_same_clear_error_at_every_party(
    make: Callable, case: str, culprit: str | None, match: str
) -> None:
    rng = np.random.default_rng(0)
    X = {"guest": rng.normal(size=(80, 3)), "host": rng.normal(size=(80, 2))}
    y = rng.integers(0, 2, 80)
    if case == "nan":
        X["host"][7, 1] = np.nan
    elif case == "labels":
        y = y * 3
    else:
        X["host"] = X["host"][:70]
    seen: dict[str, BaseException] = {}

    def party(session: Any) -> None:
        try:
            make(epochs=1, batch_size=16).fit(
                session, X[session.party], y if session.party == "guest" else None
            )
        except Exception as exc:
            seen[session.party] = exc
            raise

    with pytest.raises(PartyFailed) as info:
        run_in_threads(
            # the dealer is never contacted: the check runs before any runtime
            {"guest": party, "host": party, "dealer": lambda s: None},
            ["guest", "host", "dealer"],
            timeout=20,
            dealer="dealer",
        )
    assert set(seen) == {"guest", "host"}
    assert all(isinstance(e, DataError) and match in str(e) for e in seen.values())
    if culprit:
        assert info.value.error.party == culprit

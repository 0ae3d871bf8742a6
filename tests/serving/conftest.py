"""Fixtures of the serving tests: models trained once per session (see serving_harness)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_harness import Credit, Trained, load_credit, train_and_predict


@pytest.fixture(scope="session")
def credit(shared_data: Path) -> Credit:
    return load_credit(shared_data)


@pytest.fixture(scope="session")
def linear_model(credit: Credit, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from sharedml.learn.linear.ss import SSLogisticRegression

    out = tmp_path_factory.mktemp("models")
    return train_and_predict(
        credit, lambda: SSLogisticRegression(epochs=2, batch_size=1024), out, "lr-1"
    )


@pytest.fixture(scope="session")
def tree_model(credit: Credit, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from sharedml.learn.tree import SecureBoostClassifier

    out = tmp_path_factory.mktemp("models")
    return train_and_predict(
        credit,
        lambda: SecureBoostClassifier(protocol="ss", n_estimators=5, max_depth=3),
        out,
        "sb-1",
    )

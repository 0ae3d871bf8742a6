"""No data value or local path leaves a node in a failure reason (issue 14 item 4).

On ``arch-landed`` a text label "maybe" came back to the analyst and into the
audit log through scikit-learn's message, and other reasons carried the node's
absolute paths. :func:`sharedml.node.reasons.public_failure` keeps a code, the
step, the party and column names; everything else stays in the node's log.
"""

from __future__ import annotations

import pytest

from sharedml.errors import (
    ConfigError,
    DataError,
    PeerTimeout,
    PolicyDenied,
    StepTimeout,
)
from sharedml.node.reasons import public_failure

NAMES = {"bank", "shop", "train", "psi", "y", "x0", "income", "bank_customers"}


def test_a_foreign_exception_keeps_only_its_type() -> None:
    exc = ValueError("could not convert string to float: 'maybe' (row 17, value 4411.93)")
    failure = public_failure(exc, "bank", "train", NAMES)
    reason = failure.reason()
    assert failure.code == "internal"
    assert "maybe" not in reason and "4411" not in reason and "17" not in reason
    assert "ValueError" in reason and "'bank'" in reason and "'train'" in reason


def test_paths_and_quoted_values_are_masked_column_names_kept() -> None:
    exc = DataError(
        "dataset /srv/bank/data/customers.csv has 1 problem(s): non-numeric in column 'x0': "
        "values are not numbers at lines 1202; the first is 'secret-42'",
        party="bank", step="psi", column="x0",
        remedy="fix the file ./data/customers.csv or ~/bank.csv and load it again",
    )
    failure = public_failure(exc, "bank", "psi", NAMES)
    reason = failure.reason()
    assert "/srv" not in reason and "customers.csv" not in reason and "~/" not in reason
    assert "secret-42" not in reason
    assert "'x0'" in reason and failure.column == "x0"
    assert reason.startswith("[data] party 'bank' step 'psi':")
    assert "<path>" in reason and "<value>" in reason


def test_a_column_that_is_not_a_public_name_is_dropped() -> None:
    exc = DataError("bad values", column="4411.93")  # a value passed where a name belongs
    assert public_failure(exc, "bank", "psi", NAMES).column is None


def test_a_channel_tag_under_the_step_is_kept() -> None:
    exc = PeerTimeout("no message from 'shop' under tag 'train/mpc/open' within 30 s")
    reason = public_failure(exc, "bank", "train", NAMES).reason()
    assert "'shop'" in reason and "'train/mpc/open'" in reason


@pytest.mark.parametrize("exc, code, retry", [
    (DataError("x"), "data", False),
    (ConfigError("holds no working state from step(s) ['psi']"), "config", False),
    (PolicyDenied("no approval"), "denied", False),
    (PeerTimeout("x"), "peer_timeout", True),
    (StepTimeout("x"), "step_timeout", True),
    (RuntimeError("x"), "internal", True),
])
def test_codes_and_whether_a_retry_can_help(exc: Exception, code: str, retry: bool) -> None:
    failure = public_failure(exc, "bank", "train", NAMES)
    assert (failure.code, failure.retry) == (code, retry)

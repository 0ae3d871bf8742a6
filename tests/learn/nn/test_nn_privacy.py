"""Wire audits of the vertical MLPs: what their docstrings say crosses the
wire, and nothing else (9.4-3, 9.4-8) — no raw feature, label or (split) embedding
of one party reaches another, and the dealer receives requests only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from tests.learn.wire_audit import Audit, recorded_run

from sharedml.learn.linear._base import encode_fixed
from sharedml.learn.nn import SplitMLPClassifier, SSMLPClassifier
from sharedml.transport.recording import WireRecord

#: documented releases to the label holder: with released weights, the feature
#: holders' first-layer partial sums at prediction
RELEASES = ("hidden/sum",)


@pytest.mark.parametrize("reveal", ["none", "own"])
def test_ss_mlp_wire_audit(vertical: Callable, reveal: str) -> None:
    data = vertical("breast")
    audit, kept, out = recorded_run(
        lambda: SSMLPClassifier(epochs=1, batch_size=64, reveal_weights=reveal, random_state=1),
        data,
        dealer_runs=2 if reveal == "none" else 1,
    )
    assert audit.log and out["host"] is None
    for party, other in (("host", "guest"), ("guest", "host")):
        for rows in (data.train[party], data.test[party]):
            for to in (other, "dealer"):
                found = audit.carrying(party, to, rows.to_numpy(), documented=RELEASES)
                assert found == [], (party, to)
    assert audit.label_like("guest", "host", data.y_train) == []
    assert audit.label_like("guest", "dealer", data.y_train) == []
    # the dealer only ever receives material requests (from the last party)
    assert audit.tags("host", "dealer") == {"dealer"}
    assert audit.tags("guest", "dealer") <= {"dealer"}
    reveals = [r for r in audit.log if "/reveal" in r.tag]
    if reveal == "none":
        # the only value ever opened to a party: the test rows' outputs, to the guest
        assert reveals and all(
            r.to == "guest" and r.value.shape == (len(data.y_test), 1) for r in reveals
        )
        assert kept["host"].layers_ is None
    else:
        host_w1 = kept["host"].layers_[0]
        assert host_w1.shape == (data.train["host"].shape[1], 32)
        # the host's share of its own rows of W1 goes nowhere; the guest gets its own
        assert audit.carrying("host", "guest", host_w1, documented=RELEASES) == []
        assert all(
            r.value.shape != host_w1.shape
            for r in audit.sent("host", "guest")
            if "/reveal" in r.tag
        )
        # at prediction the host sends its first-layer partial sums, as documented
        assert "hidden" in audit.tags("host", "guest")


def test_the_audit_sees_a_leak(vertical: Callable) -> None:
    """The checks above would fail on a raw row or the labels, in any encoding."""
    data = vertical("breast")
    X = data.train["host"].to_numpy()[:3]
    y = data.y_train
    leaks = [
        WireRecord("host", "guest", "fixed", encode_fixed(X, 16)),
        WireRecord("host", "guest", "float", X.copy()),
        WireRecord("guest", "host", "bits", y.astype(np.uint64)),
        WireRecord("guest", "host", "bytes", y.astype(np.float64)),
    ]
    audit = Audit(leaks)
    assert audit.carrying("host", "guest", data.train["host"].to_numpy()) == ["fixed", "float"]
    assert audit.label_like("guest", "host", y) == ["bits", "bytes"]


class _LoggedSplit(SplitMLPClassifier):
    """Records every embedding this party computes (the audit's fingerprints)."""

    embeddings: list[np.ndarray]

    def _interactive(self, mpc: Any, h: np.ndarray, W: list[Any], c: Any) -> Any:
        self.__dict__.setdefault("embeddings", []).append(h.copy())
        return super()._interactive(mpc, h, W, c)


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_split_mlp_wire_audit(vertical: Callable, noise: float) -> None:
    data = vertical("breast")
    audit, kept, out = recorded_run(
        lambda: _LoggedSplit(
            bottom_layer_sizes=[8],
            interactive_size=8,
            epochs=1,
            batch_size=64,
            random_state=1,
            label_dp_noise=noise,
        ),
        data,
        dealer_runs=2,
    )
    assert out["host"] is None
    host_h = np.concatenate([h.ravel() for h in kept["host"].embeddings])
    assert host_h.size > 1000
    for values in (data.train["host"], data.test["host"], host_h):
        assert audit.carrying("host", "guest", np.asarray(values)) == []
        assert audit.carrying("host", "dealer", np.asarray(values)) == []
    for values in (
        data.train["guest"],
        np.concatenate([h.ravel() for h in kept["guest"].embeddings]),
    ):
        assert audit.carrying("guest", "host", np.asarray(values)) == []
    assert audit.label_like("guest", "host", data.y_train) == []
    assert audit.tags("host", "dealer") == {"dealer"}
    # u is opened to the label holder only; each party receives only the
    # gradient at its own embedding (8 wide: the host's, never the guest's)
    assert all(r.to == "guest" for r in audit.log if "/reveal#" in r.tag)
    to_host = [r for r in audit.sent("guest", "host") if "/reveal_each" in r.tag]
    assert to_host and all(r.value.shape[1] == 8 for r in to_host)
    n = len(data.y_train)
    batches = {len(b) for b in np.array_split(np.arange(n), n // 64)}
    assert {r.value.shape[0] for r in to_host} <= batches | {len(data.y_test)}
    # the embeddings' and du's shapes are fixed by the layout: no shape headers
    # (only a feature holder's block W_P, shared once at the start, sends one)
    headers = [r for r in audit.log if "/share#" in r.tag and r.frm in ("guest", "host")]
    assert [r.frm for r in headers] == ["host"], [r.tag for r in headers]
    # the label holder's own block and bias stay with it, in no encoding
    own_w, own_c = kept["guest"].own_
    assert own_w.shape == (8, 8) and kept["host"].own_ is None
    for value in (own_w, own_c):
        assert audit.carrying("guest", "host", value) == []

"""Wire audits and bad input for the vertical linear learners.

Every message is recorded (RecordingChannel). We check that no raw feature
value of one party (as float64 or as fixed-point ring element), and no label
vector, reaches another party; and that in SS mode the label holder never
receives what would let it read a feature holder's coefficients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from tests.learn.wire_audit import recorded_run

from sharedml.errors import ConfigError, DataError
from sharedml.learn.linear import HELogisticRegression, SSLogisticRegression
from sharedml.learn.linear._base import encode_fixed
from sharedml.mpc.material import Request
from sharedml.standalone import PartyFailed, run_in_threads
from sharedml.transport.recording import WireRecord

FRAC = 16


def _words(value: Any) -> np.ndarray:
    """A message as 64-bit words (empty when its size is not a multiple of 8)."""
    raw = value if isinstance(value, bytes) else np.ascontiguousarray(value).tobytes()
    if len(raw) % 8:
        return np.empty(0, dtype=np.uint64)
    return np.frombuffer(raw, dtype=np.uint64)


def _fingerprints(X: np.ndarray) -> np.ndarray:
    """float64 bit patterns and ring encodings (raw and standardised) of
    every value that is not a small integer (those collide with headers)."""
    vals = np.asarray(X, dtype=np.float64)
    std = (vals - vals.mean(0)) / np.where(vals.std(0) > 0, vals.std(0), 1)
    out = []
    for v in (vals.ravel(), std.ravel()):
        v = v[(np.abs(v) > 1e-3) & (np.abs(v - np.round(v)) > 1e-6)]
        out += [v.view(np.uint64), encode_fixed(v, FRAC)]
    prints = np.unique(np.concatenate(out))
    # words below 2^24 are also counts, row numbers and packed bits of the
    # boolean sub-protocols: positive ring encodings of values < 256 are
    # checked through their float64 pattern only
    return prints[prints >= np.uint64(1 << 24)]


def _sent(log: list[WireRecord], frm: str, to: str) -> list[WireRecord]:
    return [r for r in log if r.frm == frm and r.to == to]


#: documented reveals to the label holder: the feature holders' (summed) partial
#: scores, small reals that may equal some feature's ring encoding by chance
PARTIAL_SCORES = ("score/sum", "partial-score/sum")


def _assert_no_values(log: list[WireRecord], frm: str, to: str, X: np.ndarray) -> None:
    prints = _fingerprints(X)
    for rec in _sent(log, frm, to):
        if rec.tag.endswith(PARTIAL_SCORES):
            continue
        if rec.tag.endswith("dealer/req"):
            # a material request: kind, counter, shapes and the (public) batch row numbers
            Request.decode(rec.value)
            continue
        hits = np.intersect1d(_words(rec.value), prints)
        assert hits.size == 0, f"{frm}->{to} tag {rec.tag} carries {hits.size} raw values"


def _assert_no_label_vector(log: list[WireRecord], frm: str, to: str, y: np.ndarray) -> None:
    one = np.uint64(1 << FRAC)
    for rec in _sent(log, frm, to):
        w = _words(rec.value)
        if w.size == y.size and (np.isin(w, [0, 1]).all() or np.isin(w, [0, one]).all()):
            # masked bits (e.g. B2A openings) are 0/1 too, but independent of the labels
            agree = float(np.mean((w != 0) == (y != 0)))
            assert agree < 0.75, f"{frm}->{to} tag {rec.tag} matches the labels ({agree:.0%})"
        raw = rec.as_bytes()
        for dtype in (np.int64, np.float64, np.uint8):
            assert y[:64].astype(dtype).tobytes() not in raw


def _coef_words(coef: np.ndarray) -> list[np.ndarray]:
    """Per coefficient: its float64 bits and its fixed-point encoding ± 2 ulp."""
    enc = encode_fixed(coef, FRAC)
    near = [enc + np.uint64(d) for d in range(3)] + [enc - np.uint64(d) for d in range(1, 3)]
    bits = np.asarray(coef, dtype=np.float64).view(np.uint64)
    return [np.array([*(w[i] for w in near), bits[i]], dtype=np.uint64) for i in range(coef.size)]


def _coefs_in(value: object, per_coef: list[np.ndarray]) -> int:
    """How many coefficients appear in a message. A leak shows most of them; one
    chance equality with a (documented) small opened value such as a partial
    score, among ~5 candidate words per coefficient, does not."""
    words = _words(value)
    return sum(bool(np.intersect1d(words, c).size) for c in per_coef)


@pytest.mark.parametrize("reveal", ["own", "none"])
def test_ss_lr_wire_audit(vertical: Callable, reveal: str) -> None:
    data = vertical("breast")
    audit, kept, _ = recorded_run(
        lambda: SSLogisticRegression(epochs=2, batch_size=64, reveal_weights=reveal),
        data,
        dealer_runs=1 if reveal == "own" else 2,
    )
    log = audit.log
    assert log, "nothing was recorded"
    for other in ("guest", "dealer"):
        _assert_no_values(log, "host", other, data.train["host"].to_numpy())
        _assert_no_values(log, "host", other, data.test["host"].to_numpy())
    for other in ("host", "dealer"):
        _assert_no_values(log, "guest", other, data.train["guest"].to_numpy())
        _assert_no_label_vector(log, "guest", other, data.y_train)
    # the dealer only ever sees requests and sends material; it gets no share of data
    for p in ("guest", "host"):
        assert all(r.tag.startswith("dealer/") for r in _sent(log, p, "dealer"))
    if reveal == "own":
        host_coef = np.asarray(kept["host"].coef_)
        assert kept["guest"].coef_.size == data.train["guest"].shape[1]
        # the host never sends its share of its own coefficients to the guest
        for rec in _sent(log, "host", "guest"):
            if rec.tag.startswith("mpc/reveal"):
                assert rec.value.shape != (host_coef.size, 1), rec.tag
        words = _coef_words(host_coef)
        assert _coefs_in(encode_fixed(host_coef, FRAC), words) == host_coef.size > 2  # would catch a leak
        for rec in _sent(log, "host", "guest"):
            assert _coefs_in(rec.value, words) <= 1, rec.tag
    else:
        assert kept["guest"].coef_ is None and kept["host"].coef_ is None
        # no weight share is ever opened: the only reveals are the scores, to the guest
        reveals = [r for r in log if "reveal" in r.tag]
        assert reveals and all(r.to == "guest" for r in reveals)
        assert all(r.value.shape[0] == len(data.y_test) for r in reveals)


def test_he_lr_wire_audit(vertical: Callable) -> None:
    data = vertical("breast")
    audit, kept, _ = recorded_run(
        lambda: HELogisticRegression(epochs=1, batch_size=64, key_bits=1024), data, dealer=False
    )
    log = audit.log
    _assert_no_values(log, "host", "guest", data.train["host"].to_numpy())
    _assert_no_values(log, "guest", "host", data.train["guest"].to_numpy())
    _assert_no_label_vector(log, "guest", "host", data.y_train)
    words = _coef_words(np.asarray(kept["host"].coef_))
    for rec in _sent(log, "host", "guest"):
        assert _coefs_in(rec.value, words) <= 1, rec.tag
    # what the host sends is the documented leakage only: partial scores and ciphertexts
    assert {r.tag.split("/")[0] for r in _sent(log, "host", "guest")} <= {
        "preflight",
        "partial-score",
        "helr",
        "score",
        "predict-check",
    }


# -- bad input stops every party before training ------------------------------------------


def _fit_bad(guest_X: np.ndarray, host_X: np.ndarray, y: np.ndarray) -> PartyFailed:
    seen: dict[str, BaseException] = {}

    def party(session: Any) -> None:
        model = SSLogisticRegression(epochs=1, batch_size=16)
        X = guest_X if session.party == "guest" else host_X
        try:
            model.fit(session, X, y if session.party == "guest" else None)
        except Exception as exc:
            seen[session.party] = exc
            raise

    def dealer(session: Any) -> None:
        # the parties fail before they open an MPC runtime, so the dealer is never contacted
        pass

    with pytest.raises(PartyFailed) as info:
        run_in_threads(
            {"guest": party, "host": party, "dealer": dealer},
            ["guest", "host", "dealer"],
            timeout=20,
            dealer="dealer",
        )
    # every party fails with the same clear error, not a hang or a timeout
    assert set(seen) == {"guest", "host"}
    assert all(type(e) is type(seen["guest"]) for e in seen.values())
    return info.value


@pytest.fixture
def clean() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(100, 3)), rng.normal(size=(100, 2)), rng.integers(0, 2, 100)


@pytest.mark.parametrize(
    ("case", "match", "culprit"),
    [
        ("nan", "NaN", "host"),
        ("constant", "constant", "host"),
        ("labels", "0/1", "guest"),
        ("rows", "different numbers of training rows", None),
    ],
)
def test_bad_input_is_a_clear_error_before_training(
    clean: tuple[np.ndarray, np.ndarray, np.ndarray], case: str, match: str, culprit: str | None
) -> None:
    g, h, y = (a.copy() for a in clean)
    if case == "nan":
        h[5, 1] = np.nan
    elif case == "constant":
        h[:, 0] = 3.0
    elif case == "labels":
        y = y * 2
    else:
        h = h[:90]
    failed = _fit_bad(g, h, y)
    assert isinstance(failed.error, DataError)
    assert match in str(failed.error)
    if culprit:
        assert failed.error.party == culprit
    assert "input check" in str(failed.error)


def test_bad_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="sigmoid"):
        SSLogisticRegression(sigmoid="exact")._check_params()
    with pytest.raises(ConfigError, match="reveal_weights"):
        SSLogisticRegression(reveal_weights="all")._check_params()
    with pytest.raises(ConfigError, match="lr_schedule"):
        HELogisticRegression(lr_schedule="step")._check_params()


def test_he_lr_refuses_batches_that_would_reveal_residuals(vertical: Callable) -> None:
    data = vertical("breast")

    def party(session: Any) -> None:
        me = session.party
        HELogisticRegression(batch_size=32, key_bits=1024).fit(
            session, data.train[me], data.y_train if me == "guest" else None
        )

    with pytest.raises(PartyFailed) as info:
        run_in_threads(party, ["guest", "host"], timeout=20)
    assert isinstance(info.value.error, ConfigError)
    assert "batch_size >= 40" in str(info.value.error)

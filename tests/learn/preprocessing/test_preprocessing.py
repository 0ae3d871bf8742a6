"""Split, scaling, filling, binning and one-hot against plaintext references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from sharedml.errors import DataError, NotFittedError
from sharedml.learn.preprocessing import (
    Filler,
    Scaler,
    SecureSummer,
    apply_bins,
    bin_edges,
    one_hot,
    ordered_split,
    shared_split,
)
from sharedml.mpc import MPC, DealerProvider, serve_dealer
from sharedml.standalone import PartyFailed, run_in_threads
from sharedml.transport.recording import RecordingChannel, WireRecord

RNG = np.random.default_rng(3)
Y = (RNG.random(500) < 0.2).astype(int)


def test_split_identical_everywhere_and_stratified() -> None:
    def fn(s):
        labels = Y if s.party == "bank" else None
        return shared_split(s, 500, test_size=0.3, seed=42, label_holder="bank", labels=labels)

    log: list[WireRecord] = []
    out = run_in_threads(fn, ["bank", "shop", "telco"], wrap=lambda c: RecordingChannel(c, log))
    _, expected = train_test_split(np.arange(500), test_size=0.3, random_state=42, stratify=Y)
    for train, test in out.values():
        assert np.array_equal(test, np.sort(expected))
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(500))
    # Only the assignment leaves the label holder, never the labels.
    sent = [r for r in log if r.frm == "bank" and r.tag == "split/assign"]
    assert len(sent) == 2 and all(np.array_equal(r.value, np.isin(np.arange(500), expected)) for r in sent)


def test_unstratified_split_needs_no_label_and_checks_rows() -> None:
    out = run_in_threads(lambda s: shared_split(s, 100, test_size=0.25, seed=1), ["A", "B"])
    assert np.array_equal(out["A"][1], out["B"][1]) and len(out["A"][1]) == 25
    with pytest.raises(PartyFailed) as info:
        run_in_threads(lambda s: shared_split(s, 100 if s.party == "A" else 99), ["A", "B"])
    assert isinstance(info.value.error, DataError)


def test_ordered_split_tests_the_last_ids_and_checks_agreement() -> None:
    ids = RNG.permutation(100) * 7 + 3  # numbers, in the row order PSI left
    log: list[WireRecord] = []
    out = run_in_threads(lambda s: ordered_split(s, ids.astype(str), test_size=0.3),
                         ["A", "B"], wrap=lambda c: RecordingChannel(c, log))
    last = np.flatnonzero(ids >= np.sort(ids)[70])  # numeric order, not text order
    for train, test in out.values():
        assert np.array_equal(test, last) and np.array_equal(train, np.setdiff1d(np.arange(100),
                                                                                  last))
    assert {r.tag.rsplit("/", 1)[-1] for r in log} <= {"rows", "ordered"}  # counts, digests
    text = np.array(["b", "a", "c", "d"], dtype=object)  # not numbers: text order
    assert run_in_threads(lambda s: ordered_split(s, text, test_size=0.5),
                          ["A", "B"])["A"][1].tolist() == [2, 3]
    with pytest.raises(PartyFailed) as info:
        run_in_threads(lambda s: ordered_split(s, ids if s.party == "A" else ids[::-1],
                                               test_size=0.3), ["A", "B"])
    assert isinstance(info.value.error, DataError) and "differently" in str(info.value.error)


def test_local_scalers_match_sklearn() -> None:
    x = RNG.normal(3, 2, size=(200, 4))
    assert np.allclose(Scaler("standard").fit(x).transform(x), StandardScaler().fit_transform(x))
    assert np.allclose(Scaler("minmax").fit(x).transform(x), MinMaxScaler().fit_transform(x))
    with pytest.raises(NotFittedError):
        Scaler().transform(x)


def test_horizontal_standard_scaling_via_secure_sums() -> None:
    parts = {p: RNG.normal(i, 1 + i, size=(100 + 30 * i, 3)) for i, p in enumerate("ABC")}
    joint = np.vstack(list(parts.values()))
    log: list[WireRecord] = []
    out = run_in_threads(
        lambda s: Scaler("standard").fit_horizontal(s, parts[s.party]),
        list(parts),
        wrap=lambda c: RecordingChannel(c, log),
    )
    ref = StandardScaler().fit(joint)
    for sc in out.values():
        assert np.allclose(sc.center_, ref.mean_, atol=1e-5)
        assert np.allclose(sc.scale_, ref.scale_, atol=1e-5)
    # The masked vectors on the wire are not the local sums.
    local = parts["A"].sum(axis=0)
    masked = [r.value for r in log if r.frm == "A" and r.tag == "ssum/1"]
    assert masked and not np.allclose(
        masked[0][:3].view(np.int64) / 2.0**20, local, atol=1.0
    )


def test_secure_sum_exact_total() -> None:
    vals = {"A": np.array([1.5, -2.0]), "B": np.array([0.25, 4.0])}
    out = run_in_threads(lambda s: SecureSummer(s).sum(vals[s.party]), ["A", "B"])
    assert np.allclose(out["A"], [1.75, 2.0]) and np.allclose(out["B"], [1.75, 2.0])


def test_horizontal_minmax_under_mpc() -> None:
    parts = {"A": RNG.normal(0, 3, size=(50, 3)), "B": RNG.normal(1, 2, size=(70, 3))}
    joint = np.vstack(list(parts.values()))

    def provider(s):
        with MPC(s, DealerProvider(s, dealer="dealer")) as mpc:
            return Scaler("minmax").fit_horizontal(s, parts[s.party], mpc=mpc)

    out = run_in_threads({"A": provider, "B": provider, "dealer": serve_dealer}, ["A", "B", "dealer"])
    ref = MinMaxScaler().fit(joint)
    for p in ("A", "B"):
        assert np.allclose(out[p].center_, ref.data_min_, atol=1e-3)
        assert np.allclose(out[p].scale_, ref.data_range_, atol=1e-3)


def test_fill_local_and_horizontal() -> None:
    x = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 8.0]])
    assert np.allclose(Filler("mean").fit(x).transform(x), [[1, 6], [3, 4], [2, 8]])
    assert np.allclose(Filler("median").fit(x).transform(x)[2, 0], 2.0)
    assert np.allclose(Filler("constant", -1).fit(x).transform(x)[0, 1], -1)
    parts = {"A": x, "B": np.array([[5.0, np.nan]])}
    out = run_in_threads(lambda s: Filler("mean").fit_horizontal(s, parts[s.party]), ["A", "B"])
    assert np.allclose(out["A"].fill_, [3.0, 6.0], atol=1e-5)


def test_binning() -> None:
    x = np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9, np.nan])
    width = bin_edges(x, 3, "width")
    assert np.allclose(width, [3.0, 6.0])
    assert apply_bins(x, width).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3]
    freq = bin_edges(RNG.normal(size=10_000), 4, "frequency")
    counts = np.bincount(apply_bins(RNG.normal(size=10_000), freq))
    assert len(freq) == 3 and counts.min() > 2300


def test_one_hot() -> None:
    frame = pd.DataFrame({"city": ["Oslo", "Bergen", "Oslo"], "n": [1.0, 2.0, 3.0]})
    out = one_hot(frame)
    assert list(out.columns) == ["n", "city=Bergen", "city=Oslo"]
    assert out["city=Oslo"].tolist() == [1.0, 0.0, 1.0]

"""ECDH-PSI against a plaintext set intersection (two and three parties)."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.errors import ConfigError
from sharedml.psi import KeyRules, digest_keys, psi_digests
from sharedml.psi.curve import P, blind, hash_and_blind, hash_to_u, new_key
from sharedml.standalone import PartyFailed, run_in_threads

from .id_sets import overlapping_sets


def _run(inputs: dict[str, list[object]], **kw: object) -> dict[str, object]:
    digests = {p: digest_keys(v) for p, v in inputs.items()}
    kw.setdefault("protocol", "ecdh")
    return run_in_threads(lambda s: psi_digests(s, digests[s.party], **kw), list(inputs))


@pytest.mark.parametrize("overlap", [0.0, 0.01, 0.5, 1.0])
def test_two_party_equals_plaintext_intersection(overlap: float) -> None:
    a, b = overlapping_sets(np.random.default_rng(int(overlap * 100)), 600, overlap)
    out = _run({"A": a, "B": b})
    got_a = [a[i] for i in out["A"].rows]
    got_b = [b[i] for i in out["B"].rows]
    assert set(got_a) == set(a) & set(b)
    assert got_a == got_b  # both sides end with the same row order
    assert out["A"].set_sizes == {"A": 600, "B": 600}


def test_duplicates_and_unicode_ids() -> None:
    a = ["Zoë", "Zoe\u0308", "  straße ", "東京", "東京", "x", "ÅNGSTRÖM", "solo-a"]
    b = ["zoë", "Zoë", "straße", "東京", "ÅNGSTRÖM", "ångström", "solo-b", "x", "x"]
    out = _run({"A": a, "B": b})
    got = [a[i] for i in out["A"].rows]
    # NFC makes "Zoe\u0308" equal to "Zoë"; strip makes "  straße " equal "straße".
    assert sorted(got) == sorted(["Zoë", "  straße ", "東京", "x", "ÅNGSTRÖM"])
    assert len(got) == len(set(got))
    assert [b[i] for i in out["B"].rows] == [
        {"  straße ": "straße"}.get(v, v) for v in got
    ]
    assert out["A"].set_sizes == {"A": 6, "B": 8}  # distinct keys after normalisation


def test_casefold_rule() -> None:
    a, b = ["Alice", "BOB"], ["alice", "bob", "carol"]
    rules = KeyRules(casefold=True)
    da, db = digest_keys(a, rules=rules), digest_keys(b, rules=rules)
    out = run_in_threads(lambda s: psi_digests(s, da if s.party == "A" else db, protocol="ecdh"), ["A", "B"])
    assert sorted(a[i] for i in out["A"].rows) == ["Alice", "BOB"]


def test_integer_and_composite_keys() -> None:
    import pandas as pd

    fa = pd.DataFrame({"bank": [1, 2, 3, 4], "acct": ["a", "b", "c", "d"]})
    fb = pd.DataFrame({"bank": [2.0, 3.0, 9.0, 1.0], "acct": ["b", "x", "c", "a"]})
    da = digest_keys(fa, ["bank", "acct"])
    db = digest_keys(fb, ["bank", "acct"])
    out = run_in_threads(lambda s: psi_digests(s, da if s.party == "A" else db, protocol="ecdh"), ["A", "B"])
    pairs_a = [tuple(fa.iloc[i]) for i in out["A"].rows]
    pairs_b = [(int(fb.iloc[i].bank), fb.iloc[i].acct) for i in out["B"].rows]
    assert sorted(pairs_a) == [(1, "a"), (2, "b")]
    assert pairs_a == pairs_b
    # Composite keys are length-prefixed: ("ab","c") is not ("a","bc").
    x = digest_keys(pd.DataFrame({"p": ["ab"], "q": ["c"]}))
    y = digest_keys(pd.DataFrame({"p": ["a"], "q": ["bc"]}))
    assert not np.array_equal(x, y)


def test_result_to_one_chosen_party() -> None:
    a, b = overlapping_sets(np.random.default_rng(5), 300, 0.5)
    out = _run({"A": a, "B": b}, receivers=["B"])
    assert out["A"].rows is None
    assert set(b[i] for i in out["B"].rows) == set(a) & set(b)


def test_three_parties() -> None:
    rng = np.random.default_rng(7)
    universe = [f"k{i}" for i in range(400)]
    sets = {p: list(rng.choice(universe, 250, replace=False)) for p in ("A", "B", "C")}
    out = _run(sets)
    expected = set(sets["A"]) & set(sets["B"]) & set(sets["C"])
    rows = {p: [sets[p][i] for i in out[p].rows] for p in sets}
    assert set(rows["A"]) == expected
    assert rows["A"] == rows["B"] == rows["C"]


@pytest.mark.slow
def test_pools_and_small_batches_agree() -> None:
    a, b = overlapping_sets(np.random.default_rng(11), 700, 0.3)
    expected = set(a) & set(b)
    for kw in ({"workers": 2, "batch": 128}, {"workers": 2, "batch": 256, "processes": True}):
        out = _run({"A": a, "B": b}, **kw)
        assert set(a[i] for i in out["A"].rows) == expected


def test_empty_set() -> None:
    out = _run({"A": [], "B": ["x", "y"]})
    assert len(out["A"].rows) == 0 and len(out["B"].rows) == 0


def test_mismatched_parameters_abort() -> None:
    d = digest_keys(["a", "b"])
    with pytest.raises(PartyFailed) as info:
        run_in_threads(
            lambda s: psi_digests(s, d, batch=64 if s.party == "A" else 128, protocol="ecdh"), ["A", "B"]
        )
    assert isinstance(info.value.error, ConfigError)


def test_blinding_commutes_and_lands_on_the_curve() -> None:
    ka, kb = new_key(), new_key()
    digests = bytes(range(32)) * 4
    ab = blind(kb, hash_and_blind(ka, digests))
    ba = blind(ka, hash_and_blind(kb, digests))
    assert ab == ba
    for off in range(0, len(digests), 32):
        u = int.from_bytes(hash_to_u(digests[off : off + 32]), "little")
        assert u < P
        rhs = (u**3 + 486662 * u**2 + u) % P
        assert pow(rhs, (P - 1) // 2, P) == 1  # a square: the point is on the curve, not the twist


def test_small_order_point_is_refused() -> None:
    with pytest.raises(ArithmeticError):
        blind(new_key(), bytes(32))  # u = 0 has order 2: X25519 would output zero
    with pytest.raises(ValueError):
        blind(new_key(), bytes(31))

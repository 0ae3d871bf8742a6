"""The building blocks of secure aggregation against their definitions."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sharedml.crypto.prg import Prg
from sharedml.fl.secagg import primitives as P


def test_masks_equal_the_project_prg_word_for_word() -> None:
    key = os.urandom(16)
    n = 3 * P.CHUNK_WORDS + 17  # chunk boundaries and a ragged end
    out = np.zeros(n, dtype=np.uint64)
    P.apply_masks(out, [(key, 1)], nonce=5)
    np.testing.assert_array_equal(out, Prg(key).words(5, n))
    P.apply_masks(out, [(key, -1)], nonce=5)
    assert not out.any()


def test_pairwise_masks_cancel_and_base_is_read() -> None:
    a, b = os.urandom(16), os.urandom(16)
    base = np.arange(1000, dtype=np.uint64)
    u = P.apply_masks(np.empty(1000, dtype=np.uint64), [(a, 1), (b, -1)], base=base)
    v = P.apply_masks(np.zeros(1000, dtype=np.uint64), [(a, -1), (b, 1)])
    np.testing.assert_array_equal(u + v, base)


@pytest.mark.parametrize(("k", "n"), [(2, 2), (2, 3), (6, 10), (3, 5)])
def test_shamir_any_k_shares_recover_and_k_minus_1_do_not(k: int, n: int) -> None:
    secret = os.urandom(32)
    xs = list(range(1, n + 1))
    shares = P.share_secret(secret, k, xs)
    assert all(len(s) == 32 for s in shares.values())
    for start in range(n - k + 1):
        chosen = {x: shares[x] for x in xs[start : start + k]}
        assert P.recover_secret(chosen, k) == secret
    with pytest.raises(ValueError, match="cannot recover"):
        P.recover_secret({x: shares[x] for x in xs[: k - 1]}, k)
    # k - 1 shares posing as a threshold-(k-1) set give an unrelated value
    if k > 2:
        assert P.recover_secret({x: shares[x] for x in xs[: k - 1]}, k - 1) != secret


def test_agreement_is_symmetric_and_bound_to_its_label() -> None:
    a, b = P.new_private_key(), P.new_private_key()
    label = P.pair_label("s", 3, 1, 4)
    assert label == P.pair_label("s", 3, 4, 1)
    key = P.agree(a, P.public_bytes(b), label)
    assert key == P.agree(b, P.public_bytes(a), label)
    assert key != P.agree(a, P.public_bytes(b), P.pair_label("s", 4, 1, 4))
    with pytest.raises(ValueError):
        P.agree(a, bytes(32), label)  # a low-order point: X25519 refuses it


def test_sealed_shares_open_only_under_their_round_and_pair() -> None:
    key = os.urandom(16)
    sealed = P.seal(key, b"share", b"r1|0|1")
    assert P.open_sealed(key, sealed, b"r1|0|1") == b"share"
    with pytest.raises(P.OpenFailed):
        P.open_sealed(key, sealed, b"r2|0|1")
    with pytest.raises(P.OpenFailed):
        P.open_sealed(os.urandom(16), sealed, b"r1|0|1")

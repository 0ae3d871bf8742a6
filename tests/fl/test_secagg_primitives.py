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


def test_pairwise_masks_cancel_and_fill_writes_what_is_masked() -> None:
    a, b = os.urandom(16), os.urandom(16)
    n = P.CHUNK_WORDS + 1000
    base = np.arange(n, dtype=np.uint64)
    u = P.apply_masks(
        np.empty(n, dtype=np.uint64),
        [(a, 1), (b, -1)],
        fill=lambda start, stop, chunk: np.copyto(chunk, base[start:stop]),
    )
    v = P.apply_masks(np.zeros(n, dtype=np.uint64), [(a, -1), (b, 1)])
    np.testing.assert_array_equal(u + v, base)


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

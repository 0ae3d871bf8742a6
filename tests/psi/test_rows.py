"""The row helpers every PSI protocol shares (psi/rows.py)."""

from __future__ import annotations

import numpy as np

from sharedml.psi.rows import as_void, secret_permutation, unique_first


def test_secret_permutation_is_a_permutation_and_not_repeated() -> None:
    perms = [secret_permutation(64) for _ in range(3)]
    for p in perms:
        assert sorted(p.tolist()) == list(range(64))
    # two equal draws of a uniform permutation of 64 items: probability 1/64!
    assert not np.array_equal(perms[0], perms[1])
    assert len(secret_permutation(0)) == 0


def test_unique_first_keeps_the_first_row_of_each_key_in_row_order() -> None:
    rows = np.array([[3, 1], [1, 2], [3, 1], [0, 0], [1, 2]], dtype=np.uint8)
    assert unique_first(rows).tolist() == [0, 1, 3]


def test_as_void_orders_rows_like_their_bytes() -> None:
    rng = np.random.default_rng(7)
    rows = rng.integers(0, 256, size=(200, 5), dtype=np.uint8)
    by_void = np.argsort(as_void(rows), kind="stable")
    by_bytes = sorted(range(len(rows)), key=lambda i: rows[i].tobytes())
    assert [rows[i].tobytes() for i in by_void] == [rows[i].tobytes() for i in by_bytes]

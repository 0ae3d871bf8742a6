"""Shamir sharing over 2^521 − 1 against its definition."""

from __future__ import annotations

import os

import pytest

from sharedml.crypto import shamir
from sharedml.errors import ConfigError


@pytest.mark.parametrize(("k", "n"), [(1, 1), (2, 2), (2, 3), (6, 10), (7, 10), (3, 5)])
def test_any_k_shares_recover_the_secret(k: int, n: int) -> None:
    secret = os.urandom(32)
    xs = list(range(1, n + 1))
    shares = shamir.split(secret, k, xs)
    assert all(len(s) == shamir.SHARE_BYTES for s in shares.values())
    for start in range(n - k + 1):
        points = xs[start : start + k]
        assert shamir.Recombiner(points, k).recover(shares, 32) == secret


def test_one_recombiner_serves_every_secret_shared_at_its_points() -> None:
    xs = [2, 5, 7, 9]
    rec = shamir.Recombiner(xs, 4)
    for size in (1, 16, 32, 64):
        secret = os.urandom(size)
        assert rec.recover(shamir.split(secret, 4, range(1, 11)), size) == secret


def test_the_shares_are_the_polynomial_at_the_points() -> None:
    secret = (12345).to_bytes(16, "big")
    shares = shamir.split(secret, 3, [1, 2, 3, 4])
    ys = {x: int.from_bytes(s, "big") for x, s in shares.items()}
    # a degree-2 polynomial: third differences vanish, f(0) is the secret
    assert (ys[4] - 3 * ys[3] + 3 * ys[2] - ys[1]) % shamir.PRIME == 0
    assert (3 * ys[1] - 3 * ys[2] + ys[3]) % shamir.PRIME == 12345


def test_wrong_inputs_are_refused() -> None:
    with pytest.raises(ConfigError):
        shamir.split(b"", 2, [1, 2])
    with pytest.raises(ConfigError):
        shamir.split(os.urandom(65), 2, [1, 2])
    with pytest.raises(ConfigError):
        shamir.split(b"x", 3, [1, 2])
    with pytest.raises(ConfigError):
        shamir.split(b"x", 2, [0, 1])
    with pytest.raises(ConfigError):
        shamir.Recombiner([1, 1], 2)
    shares = shamir.split(os.urandom(32), 2, [1, 2])
    with pytest.raises(ValueError, match="size"):
        shamir.Recombiner([1, 2], 2).recover(shares, 8)

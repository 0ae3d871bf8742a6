"""Quantisation into Z_2^64 and Z_2^32: the stated error bound holds, the ring is chosen by
the stated rule, and bad updates are refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedml.errors import ConfigError, DataError
from sharedml.fl.quantize import Quantizer


@settings(max_examples=60, deadline=None)
@given(
    bound_exp=st.integers(-10, 40),
    clients=st.integers(1, 200),
    seed=st.integers(0, 2**32 - 1),
    narrow=st.booleans(),
)
def test_ring_sum_decodes_within_the_stated_bound(
    bound_exp: int, clients: int, seed: int, narrow: bool
) -> None:
    q = Quantizer.for_sum(2.0**bound_exp, clients) if narrow else Quantizer(2.0**bound_exp, clients)
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-q.bound, q.bound, size=(clients, 64))
    xs[0, :2] = (q.bound, -q.bound)  # the extremes are allowed
    total = np.zeros(64, dtype=q.dtype)
    for x in xs:
        total += q.encode(x)
    exact = np.sum(xs.astype(np.longdouble), axis=0)
    got = q.decode(total)
    err = np.abs(got.astype(np.longdouble) - exact)
    assert np.all(err <= q.error_bound(clients, got).astype(np.longdouble))


def test_frac_bits_is_the_largest_that_cannot_wrap() -> None:
    q = Quantizer(2.0**20, 10)
    f = q.frac_bits
    assert 10 * (2.0**20 * 2.0**f + 0.5) < 2.0**63
    assert 10 * (2.0**20 * 2.0 ** (f + 1) + 0.5) >= 2.0**63
    assert f == 39


@pytest.mark.parametrize(("bound", "ring"), [(1000.0, 64), (10.0, 32)])
def test_the_worst_case_sum_does_not_wrap(bound: float, ring: int) -> None:
    q = Quantizer.for_sum(bound, 7)
    assert q.ring_bits == ring
    total = np.zeros(2, dtype=q.dtype)
    for _ in range(7):
        total += q.encode(np.array([bound, -bound]))
    np.testing.assert_allclose(q.decode(total), [7 * bound, -7 * bound], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("bound", "clients", "ring", "frac_bits"),
    [(1.0, 10, 32, 27), (8.0, 15, 32, 24), (8.0, 16, 64, 55), (2.0**20, 10, 64, 39)],
)
def test_the_32_bit_ring_is_chosen_when_it_keeps_24_fractional_bits(
    bound: float, clients: int, ring: int, frac_bits: int
) -> None:
    q = Quantizer.for_sum(bound, clients)
    assert (q.ring_bits, q.frac_bits, q.dtype) == (ring, frac_bits, np.dtype(f"u{ring // 8}"))
    if ring == 32:  # the stated rule: m (bound 2^24 + 1/2) < 2^31, and the stated error
        assert clients * (bound * 2.0**24 + 0.5) < 2.0**31
        assert q.error_bound(clients).max() <= clients * 2.0**-25 * (1 + 2.0**-52)
    else:
        assert clients * (bound * 2.0**24 + 0.5) >= 2.0**31


@pytest.mark.parametrize(
    ("value", "words"),
    [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity"), (2.0**21, "outside")],
)
def test_bad_values_are_refused_by_name(value: float, words: str) -> None:
    q = Quantizer(2.0**20, 3)
    with pytest.raises(DataError, match=words):
        q.encode(np.array([0.0, value]))


def test_impossible_bounds_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        Quantizer(0.0, 3)
    with pytest.raises(ConfigError, match="no room"):
        Quantizer(2.0**62, 4)

"""Quantisation into Z_2^64: the stated error bound holds and bad updates are refused."""

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
)
def test_ring_sum_decodes_within_the_stated_bound(bound_exp: int, clients: int, seed: int) -> None:
    q = Quantizer(2.0**bound_exp, clients)
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-q.bound, q.bound, size=(clients, 64))
    xs[0, :2] = (q.bound, -q.bound)  # the extremes are allowed
    total = np.zeros(64, dtype=np.uint64)
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


def test_the_worst_case_sum_does_not_wrap() -> None:
    q = Quantizer(1000.0, 7)
    total = np.zeros(2, dtype=np.uint64)
    for _ in range(7):
        total += q.encode(np.array([1000.0, -1000.0]))
    np.testing.assert_allclose(q.decode(total), [7000.0, -7000.0], rtol=0, atol=1e-9)


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

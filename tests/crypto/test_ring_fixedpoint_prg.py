"""Pure math: the ring, its exact BLAS products, fixed point and the AES-CTR PRG."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sharedml.crypto import ring
from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.crypto.prg import Prg, derive_key
from sharedml.errors import ConfigError, DataError


def _words(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return Prg(derive_key(bytes(16), f"test/{seed}")).uint64(0, shape)


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (7, 13, 5), (64, 2048, 3), (3, 2049, 4), (5, 5000, 2)])
def test_limb_matmul_is_exact(m: int, k: int, n: int) -> None:
    a, b = _words(1, (m, k)), _words(2, (k, n))
    assert np.array_equal(ring.matmul(a, b), a @ b)  # numpy's uint64 matmul wraps mod 2^64


def test_limb_matmul_extreme_values() -> None:
    edge = np.array([0, 1, 2**63, 2**64 - 1, 2**63 - 1, 2**21, 2**22 - 1, 2**44], dtype=np.uint64)
    a = np.tile(edge, (8, 256))  # inner dimension 2048, every limb at its extremes
    b = np.ascontiguousarray(np.tile(edge[:, None], (256, 8)))
    assert np.array_equal(ring.matmul(a, b), a @ b)


@pytest.mark.parametrize(("m", "n"), [(63, 1), (1, 63), (9, 9)])
def test_limb_matmul_chunked_views_are_exact(m: int, n: int) -> None:
    # a tall matrix's transpose times a column (a FixedOperand's X[R]ᵀ q), inner
    # dimension 5000 in three chunks, each operand stacked or read in place
    a = _words(3, (5000, m)).T
    b = _words(4, (5000, n))
    want = np.ascontiguousarray(a) @ b
    assert np.array_equal(ring.matmul(a, b), want)
    assert np.array_equal(ring.matmul(ring.split(a.T).T, ring.split(b)), want)


def test_limb_matmul_extreme_values_tall_and_chunked() -> None:
    edge = np.array([0, 1, 2**63, 2**64 - 1, 2**63 - 1, 2**21, 2**22 - 1, 2**44], dtype=np.uint64)
    a = np.tile(edge, (40, 2 * 256 + 1))  # inner 4104: two full chunks and a short one
    b = np.ascontiguousarray(np.tile(edge[:, None], (2 * 256 + 1, 2)))
    assert np.array_equal(ring.matmul(a, b), a @ b)
    assert np.array_equal(ring.matmul(a[:, :2048], b[:2048]), a[:, :2048] @ b[:2048])
    # every limb at its largest odd magnitude: a float64 sum over more than 2048
    # terms would round, so this fails if a chunk ever exceeded MAX_EXACT_INNER
    top = (2**21 - 1) * (1 + 2**22) + (2**19 - 1) * 2**44
    a, b = np.full((40, 4104), top, dtype=np.uint64), np.full((4104, 2), top, dtype=np.uint64)
    assert np.array_equal(ring.matmul(a, b), a @ b)
    assert np.array_equal(ring.matmul(b.T, a.T), (a @ b).T)


def test_limbs_reconstruct() -> None:
    a = _words(3, (100,))
    limbs = ring.split(a)
    back = (
        limbs.l0.astype(np.int64).view(np.uint64)
        + (limbs.l1.astype(np.int64).view(np.uint64) << np.uint64(22))
        + (limbs.l2.astype(np.int64).view(np.uint64) << np.uint64(44))
    )
    assert np.array_equal(back, a)
    assert np.abs(limbs.l0).max() <= 2**21 and np.abs(limbs.l2).max() <= 2**19


def test_signed_views_and_shifts() -> None:
    x = np.array([-5, 5, -(2**62), 2**62 - 1], dtype=np.int64)
    r = ring.from_signed(x)
    assert np.array_equal(ring.to_signed(r), x)
    assert np.array_equal(ring.to_signed(ring.arshift(r, 2)), x >> 2)
    assert np.array_equal(ring.msb(r), (x < 0).astype(np.uint64))


def test_fixed_point_round_trip_and_range() -> None:
    fp = FixedPoint(16)
    x = np.array([0.0, -0.0, 1.5, -1.5, 1e-5, -3.14159, fp.limit - 1, -fp.limit])
    back = fp.decode(fp.encode(x))
    assert np.all(np.abs(back - x) <= fp.ulp / 2)
    for bad in (np.inf, np.nan, fp.limit, -fp.limit - 1):
        with pytest.raises(DataError):
            fp.encode(np.array([bad]))
    with pytest.raises(ConfigError):
        FixedPoint(41)
    assert fp.mul_limit == 2.0**30


def test_prg_matches_aes_ctr_and_is_deterministic() -> None:
    key = derive_key(b"k" * 32, "label")
    prg = Prg(key)
    words = prg.words(7, 1000)
    iv = (7).to_bytes(8, "big") + bytes(8)
    ref = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor().update(bytes(8000))
    assert words.tobytes() == ref
    assert np.array_equal(Prg(key).words(7, 1000), words)
    assert not np.array_equal(prg.words(8, 1000), words)
    assert derive_key(b"k" * 32, "other") != key


def test_prg_output_is_balanced() -> None:
    words = Prg.fresh().uint64(0, 200_000)
    for p in range(64):
        ones = np.count_nonzero((words >> np.uint64(p)) & np.uint64(1))
        assert abs(ones - 100_000) < 5 * np.sqrt(200_000) / 2


def test_prg_rejects_weak_keys() -> None:
    with pytest.raises(ConfigError):
        derive_key(b"short", "x")
    with pytest.raises(ConfigError):
        Prg(b"0" * 8)


def test_prg_into_reused_buffers() -> None:
    from sharedml.crypto.prg import BufferPool

    prg = Prg(derive_key(bytes(16), "pool"))
    pool = BufferPool()
    buf = pool.take(1000)
    first = prg.uint64(3, (10, 100), buf).copy()
    pool.give(buf)
    again = pool.take(1000)
    assert again is buf  # reused, not reallocated
    assert np.array_equal(prg.uint64(3, (10, 100), again), first)
    with pytest.raises(ConfigError):
        prg.words(0, 1000, np.empty(1000, dtype=np.uint64))  # no room for the slack

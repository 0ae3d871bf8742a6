"""Pure math: the ring, fixed point and the AES-CTR PRG (exact products: test_ring_matmul)."""

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

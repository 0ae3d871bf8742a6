"""Slot packing: exact round trips, sums, Horner packing under real Paillier."""

from __future__ import annotations

import numpy as np
import pytest

from sharedml.crypto.paillier import generate_keypair
from sharedml.errors import ConfigError
from sharedml.he import Encryptor, SlotLayout, pack_ciphertexts, unpack_slots


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


def test_signed_slots_round_trip_and_add():
    layout = SlotLayout.for_sums(n_rows=1000, bound=1.0, frac_bits=20)
    rng = np.random.default_rng(0)
    g, h = rng.uniform(-1, 1, 1000), rng.uniform(0, 0.25, 1000)
    rows = layout.join([layout.encode(g), layout.encode(h)])
    total = sum(rows)
    gs, hs = unpack_slots(total, layout.slot_bits, 2)
    # each row is rounded to 2^-20, so the sum is within n * 2^-21
    assert abs(layout.decode([gs])[0] - g.sum()) <= 1000 * 2.0**-21
    assert abs(layout.decode([hs])[0] - h.sum()) <= 1000 * 2.0**-21


def test_unpack_detects_overflow():
    with pytest.raises(ValueError):
        unpack_slots(1 << 40, 8, 2)


def test_encode_rejects_values_beyond_the_layout():
    layout = SlotLayout.for_sums(n_rows=1, bound=1.0, frac_bits=8)
    with pytest.raises(ConfigError):
        layout.encode(np.array([1e9]))
    with pytest.raises(ConfigError):
        SlotLayout.for_sums(10, float("nan"))


def test_pack_ciphertexts_under_paillier(keys):
    pk, sk = keys
    layout = SlotLayout.for_sums(n_rows=50, bound=2.0, frac_bits=16)
    rng = np.random.default_rng(1)
    vals = rng.uniform(-2, 2, size=(6, 2))
    cts = [
        pk.encrypt(m) for m in layout.join([layout.encode(vals[:, 0]), layout.encode(vals[:, 1])])
    ]
    per = layout.slots_per_plaintext(pk.plaintext_bits) // 2
    assert per >= 6
    packed = pack_ciphertexts(cts, 2 * layout.slot_bits, pk.n_sq)
    slots = unpack_slots(sk.decrypt_signed(packed), layout.slot_bits, 12)
    np.testing.assert_allclose(layout.decode(slots).reshape(6, 2), vals, atol=2.0**-16)


def test_encryptor_in_process_matches_pool(keys):
    """Both paths give fresh, correct encryptions (the pool precomputes the randomness)."""
    pk, sk = keys
    chunks = [[1, 2, 3], [-4, 5]]
    with Encryptor(pk, n_jobs=1) as enc:
        single = list(enc.encrypt_chunks(chunks))
    with Encryptor(pk, n_jobs=2, chunk=2) as enc:
        enc.reserve(3)
        assert enc.stocked >= 3
        pooled = list(enc.encrypt_chunks(chunks))
    for a, b, want in zip(single, pooled, chunks, strict=True):
        assert sk.decrypt_many(pk.unpack(a)) == want
        assert sk.decrypt_many(pk.unpack(b)) == want
        assert a != b  # fresh randomness


def test_zero_maker_gives_fresh_encryptions_of_zero(keys):
    from sharedml.he.pool import ZeroMaker

    pk, sk = keys
    maker = ZeroMaker(pk, window=6)
    zeros = [maker.zero() for _ in range(20)]
    assert len(set(zeros)) == 20
    assert all(sk.decrypt(z) == 0 for z in zeros)
    # used as randomisers they give correct encryptions
    assert sk.decrypt_signed(pk.add_plain(zeros[0], -7)) == -7

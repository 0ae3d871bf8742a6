"""The dealer's narrow corrections: TRUNC's r_msb travels mod 2^f, packed."""

from __future__ import annotations

import numpy as np
import pytest
from tests.mpc.conftest import run_mpc

from sharedml.crypto import ring
from sharedml.crypto.prg import Prg
from sharedml.mpc import truncate
from sharedml.mpc.material import Component
from sharedml.mpc.truncation import SMALL_OPEN
from sharedml.transport.recording import RecordingChannel, WireRecord


@pytest.mark.parametrize("bits", [8, 16, 32, 64])
@pytest.mark.parametrize("size", [1, 7, 1001])
def test_pack_keeps_the_share_mod_2_to_the_wire_bits(bits: int, size: int) -> None:
    comp = Component("r_msb", (size,), derived=True, wire_bits=bits)
    share = Prg.fresh().uint64(0, size)
    words = np.full(comp.wire_words, 0xFFFF_FFFF_FFFF_FFFF, dtype=np.uint64)
    comp.pack(share, words)
    assert comp.wire_words == -(-size * bits // 64)
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    np.testing.assert_array_equal(comp.unpack(words), share & mask)


@pytest.mark.parametrize("bits", [3, 16, 20, 40])
def test_truncation_with_narrow_wrap_correction_is_exact_and_smaller(bits: int) -> None:
    n = 20_001
    rng = np.random.default_rng(bits)
    x = rng.integers(-(1 << 61), 1 << 61, size=n, dtype=np.int64)
    x[:4] = [0, 1, -1, -(1 << 61)]

    def body(mpc):
        sx = mpc.share(ring.from_signed(x) if mpc.party == "alice" else None, owner="alice", encoded=True, scale=bits)
        before = mpc.provider.bytes_received
        y = truncate(sx, bits)
        got = mpc.provider.bytes_received - before
        return y.reveal(to="alice", raw=True), got

    out = run_mpc(body)
    err = ring.to_signed(out["alice"][0]) - (x >> bits)
    assert set(np.unique(err).tolist()) <= {0, 1}
    width = next(w for w in (8, 16, 32, 64) if bits <= w)
    # bob (the last party) gets r_hi in full and r_msb in `width` bits; alice nothing
    assert out["bob"][1] == 8 * n + 8 * -(-n * width // 64)
    assert out["alice"][1] == 0


@pytest.mark.parametrize("n", [SMALL_OPEN + 64, SMALL_OPEN])
def test_two_party_truncation_opens_at_one_party_and_returns_one_bit(n: int) -> None:
    """A large truncation opens at alice, who returns msb(c); a small one opens to both
    in one exchange (latency over bytes)."""
    x = np.random.default_rng(3).integers(-(1 << 40), 1 << 40, size=n, dtype=np.int64)
    log: list[WireRecord] = []

    def body(mpc):
        sx = mpc.share(ring.from_signed(x) if mpc.party == "alice" else None, owner="alice", encoded=True, scale=32)
        return truncate(sx, 16).reveal(to="alice", raw=True)

    out = run_mpc(body, wrap=lambda ch: RecordingChannel(ch, log))
    err = ring.to_signed(out["alice"]) - (x >> 16)
    assert set(np.unique(err).tolist()) <= {0, 1}
    tags = [r for r in log if "trunc" in r.tag]
    if n > SMALL_OPEN:  # bob's masked share goes to alice; alice answers with msb(c), 64 a word
        want = [("alice", "bob", n // 64), ("bob", "alice", n)]
    else:  # both send their masked share, at once
        want = [("alice", "bob", n), ("bob", "alice", n)]
    assert sorted((r.frm, r.to, np.asarray(r.value).size) for r in tags) == want

"""Wire audit: what crosses the wire during a multiplication, a comparison and a sigmoid.

Every message any party sends (to the other provider or the dealer) is
recorded. No message may equal or contain the fixed-point encoding of an input,
and every bulk message (shares, masked values) must look uniform: each of the
64 bit positions is set in about half the words (or, for one-bit messages,
the low bit is).
"""

from __future__ import annotations

import numpy as np
import pytest
from tests.mpc.conftest import run_mpc

from sharedml.crypto.fixedpoint import FixedPoint
from sharedml.mpc import FixedOperand, beaver
from sharedml.mpc import nonlinear as N
from sharedml.mpc.boolean import bit_mul, msb_bits
from sharedml.transport.recording import RecordingChannel, WireRecord

FP = FixedPoint(16)
N_ELEMENTS = 4096


def _bits_balanced(words: np.ndarray, positions: int) -> bool:
    n = words.size
    for p in range(positions):
        ones = int(np.count_nonzero((words >> np.uint64(p)) & np.uint64(1)))
        # 5 standard deviations of Binomial(n, 1/2)
        if abs(ones - n / 2) > 5 * np.sqrt(n) / 2:
            return False
    return True


def looks_uniform(words: np.ndarray) -> bool:
    """Every bit position balanced (one-bit messages: the low bit)."""
    words = words.ravel()
    return _bits_balanced(words, 1 if words.max() <= 1 else 64)


def reveals_input(record: WireRecord, encodings: list[np.ndarray]) -> bool:
    value = record.value
    if isinstance(value, bytes):
        return any(enc.tobytes() in value for enc in encodings)
    words = np.ascontiguousarray(value).view(np.uint8).tobytes()
    for enc in encodings:
        if enc.tobytes() in words:
            return True
        if value.dtype == np.uint64 and np.isin(value.ravel(), enc).any():
            return True
    return False


def test_no_message_reveals_an_input() -> None:
    rng = np.random.default_rng(11)
    x = rng.uniform(0.5, 3.0, N_ELEMENTS) * rng.choice([-1, 1], N_ELEMENTS)
    y = rng.uniform(0.5, 3.0, N_ELEMENTS) * rng.choice([-1, 1], N_ELEMENTS)
    encodings = [FP.encode(x), FP.encode(y), FP.encode(-x), FP.encode(-y)]
    log: list[WireRecord] = []

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        sy = mpc.share(y if mpc.party == "bob" else None, owner="bob")
        prod = sx * sy
        below = sx < sy
        sig = N.sigmoid(sx, "clipped")
        chosen = bit_mul(msb_bits(sx - sy), sx)  # [x < y]·x, bits folded into the product
        # a truncation folded into a fixed operand's product (SS-LR's gradient)
        fx = FixedOperand(
            mpc.share(np.stack([x, -x], 1) if mpc.party == "alice" else None, owner="alice")
        )
        folded = fx.truncated_matmul_t(beaver.mul(sx, sy), FP.frac_bits)
        return prod.share, below.share, sig.share, chosen.share, folded.share

    out = run_mpc(body, wrap=lambda ch: RecordingChannel(ch, log))
    # the protocol worked on these inputs
    total = out["alice"][0] + out["bob"][0]
    assert np.allclose(FP.decode(total), x * y, atol=1e-3)
    bits = out["alice"][1] + out["bob"][1]
    assert np.array_equal(bits, (x < y).astype(np.uint64))
    chosen = FP.decode(out["alice"][3] + out["bob"][3])
    folded = (out["alice"][4] + out["bob"][4]).view(np.int64) / float(1 << (2 * FP.frac_bits))
    xe = FP.decode(FP.encode(x))
    assert np.allclose(folded.ravel(), [xe @ (xe * y), -xe @ (xe * y)], rtol=1e-4, atol=0.05)
    assert np.array_equal(chosen, np.where(x < y, FP.decode(FP.encode(x)), 0.0))

    assert len(log) > 20
    bulk = 0
    for record in log:
        assert not reveals_input(record, encodings), f"{record.frm}->{record.to} {record.tag}"
        value = record.value
        if isinstance(value, np.ndarray) and value.dtype == np.uint64 and value.size >= 1024:
            bulk += 1
            assert looks_uniform(value), f"{record.frm}->{record.to} {record.tag} is not uniform"
    assert bulk >= 15  # mul, trunc, adder levels, b2a, sigmoid's products all checked


def test_audit_would_catch_a_leak() -> None:
    """The detectors above do flag an input sent in the clear or a low-entropy value."""
    rng = np.random.default_rng(12)
    x = rng.uniform(0.5, 3.0, N_ELEMENTS)
    enc = FP.encode(x)
    leak = WireRecord("alice", "bob", "t", enc.copy())
    assert reveals_input(leak, [enc])
    assert not looks_uniform(enc)
    assert not looks_uniform(enc + FP.encode(np.full(N_ELEMENTS, 5.0)))


@pytest.mark.slow
def test_he_provider_wire_reveals_no_input() -> None:
    """With HEProvider: Paillier traffic and openings during a multiplication."""
    rng = np.random.default_rng(13)
    n = 1024
    x = rng.uniform(0.5, 3.0, n) * rng.choice([-1, 1], n)
    y = rng.uniform(0.5, 3.0, n) * rng.choice([-1, 1], n)
    encodings = [FP.encode(x), FP.encode(y)]
    log: list[WireRecord] = []

    def body(mpc):
        sx = mpc.share(x if mpc.party == "alice" else None, owner="alice")
        sy = mpc.share(y if mpc.party == "bob" else None, owner="bob")
        return (sx * sy).share

    out = run_mpc(body, "he", wrap=lambda ch: RecordingChannel(ch, log))
    assert np.allclose(FP.decode(out["alice"] + out["bob"]), x * y, atol=1e-3)
    kinds = {type(r.value).__name__ for r in log}
    assert "ndarray" in kinds
    for record in log:
        assert not reveals_input(record, encodings), f"{record.frm}->{record.to} {record.tag}"
        value = record.value
        if isinstance(value, np.ndarray) and value.dtype == np.uint64 and value.size >= 1024:
            assert looks_uniform(value), record.tag


def test_dealer_sends_the_first_party_nothing_but_its_key() -> None:
    """PRG seeds make party 0's material free: the dealer talks only to the last party."""
    log: list[WireRecord] = []

    def body(mpc):
        sx = mpc.share(np.arange(2000.0) if mpc.party == "alice" else None, owner="alice")
        return ((sx * sx) < 5.0).share

    run_mpc(body, wrap=lambda ch: RecordingChannel(ch, log))
    from_dealer = [r for r in log if r.frm == "dealer"]
    to_alice = [r for r in from_dealer if r.to == "alice"]
    assert len(to_alice) == 1 and isinstance(to_alice[0].value, bytes)  # the AES key
    assert len(to_alice[0].value) == 16
    to_bob = [r for r in from_dealer if r.to == "bob"]
    assert len(to_bob) > 5  # corrections for the triple, pair, AND/adder triples, daBits
    assert not any(r.to == "dealer" and r.frm == "alice" for r in log)

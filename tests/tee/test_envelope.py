"""HPKE data keys and the AEAD chunk stream: round trips and every way to break them."""

from __future__ import annotations

import pytest

from sharedml.errors import ProtocolAbort
from sharedml.tee.enclave import wire
from sharedml.tee.envelope import (
    HYBRID,
    X25519,
    ChunkOpener,
    ChunkSealer,
    EnclaveKeys,
    KeyBundle,
    data_key,
)


@pytest.mark.parametrize("kem", [X25519, HYBRID])
def test_hpke_round_trip_and_info_binding(kem: str) -> None:
    keys = EnclaveKeys(kem)
    bundle = KeyBundle.from_bytes(keys.bundle.to_bytes())
    key = data_key()
    sealed = bundle.seal(key, b"job-a")
    assert keys.open(sealed, b"job-a") == key
    with pytest.raises(ProtocolAbort):
        keys.open(sealed, b"job-b")  # info binds the context
    with pytest.raises(ProtocolAbort):
        EnclaveKeys(kem).open(sealed, b"job-a")  # another enclave's key


def test_hybrid_bundle_carries_ml_kem_key() -> None:
    assert len(EnclaveKeys(HYBRID).bundle.kem_public) == 1184 + 32


def test_destroyed_keys_cannot_open() -> None:
    keys = EnclaveKeys()
    sealed = keys.bundle.seal(b"k" * 32, b"i")
    keys.destroy()
    with pytest.raises(ProtocolAbort):
        keys.open(sealed, b"i")


def stream(n: int) -> tuple[bytes, list[tuple[int, bool, bytes]]]:
    key = data_key()
    sealer = ChunkSealer(key, b"s1")
    return key, [(i, i == n - 1, sealer.seal(bytes([i]) * 10, i == n - 1)) for i in range(n)]


def test_chunks_open_in_order() -> None:
    key, chunks = stream(3)
    opener = ChunkOpener(key, b"s1")
    assert b"".join(opener.open(*c) for c in chunks) == b"\0" * 10 + b"\1" * 10 + b"\2" * 10
    assert opener.done


@pytest.mark.parametrize("attack", ["reorder", "duplicate", "flip", "false-last", "other-stream", "after-end"])
def test_chunk_attacks_fail(attack: str) -> None:
    key, chunks = stream(3)
    opener = ChunkOpener(key, b"s2" if attack == "other-stream" else b"s1")
    with pytest.raises(ProtocolAbort):
        if attack == "reorder":
            opener.open(*chunks[1])
        elif attack == "duplicate":
            opener.open(*chunks[0])
            opener.open(*chunks[0])
        elif attack == "flip":
            seq, last, ct = chunks[0]
            opener.open(seq, last, bytes([ct[0] ^ 1]) + ct[1:])
        elif attack == "false-last":
            seq, _, ct = chunks[0]
            opener.open(seq, True, ct)  # truncation: claim the first chunk was the last
        elif attack == "other-stream":
            opener.open(*chunks[0])
        else:
            for c in chunks:
                opener.open(*c)
            opener.open(3, True, chunks[2][2])


def test_malformed_bundle() -> None:
    with pytest.raises(ProtocolAbort):
        KeyBundle.from_bytes(b"{not json")
    with pytest.raises(ProtocolAbort):
        KeyBundle.from_bytes(b'{"kem":"RSA","kem_public":"00","sign_public":""}')


def test_wire_round_trip_and_malformed() -> None:
    header, body = wire.decode(wire.encode({"seq": 3, "last": True}, b"\x00\xff"))
    assert header == {"v": 1, "seq": 3, "last": True} and body == b"\x00\xff"
    for bad in (b"", b"\x00\x00\x00\x10{}", b"\x00\x00\x00\x02{}", b"\x00\x00\x00\x07{\"v\":9}", b"\x00\x00\x00\x01x"):
        with pytest.raises(ProtocolAbort):
            wire.decode(bad)

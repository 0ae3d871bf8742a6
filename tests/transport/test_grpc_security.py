"""Security of the gRPC transport over real mutual TLS on loopback.

Each test attacks the live servers of parties a, b, c (the session fixture)
and then checks that the attacked server still serves its legitimate peers.
"""

from __future__ import annotations

import datetime as dt
import shutil
import struct
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
from _transport_helpers import raw_stream

from sharedml.crypto import pki
from sharedml.errors import FrameError, PeerUnreachable
from sharedml.transport import grpc_wire
from sharedml.transport.grpc import GrpcEndpoint

PARTIES = ("a", "b", "c")


def _job() -> str:
    return f"sec-{uuid.uuid4().hex[:8]}"


def _still_serves(endpoints: dict[str, GrpcEndpoint], addresses: dict[str, str]) -> None:
    """a's server still takes values from b after the attack."""
    job = _job()
    ch = {p: endpoints[p].channel(job, PARTIES, addresses, timeout=20) for p in PARTIES}
    try:
        ch["b"].connect()  # opens b's streams to a and c up front
        ch["b"].send("a", "hello", np.arange(10))
        assert np.array_equal(ch["a"].recv("b", "hello"), np.arange(10))
    finally:
        for c in ch.values():
            c.close()


def _stranger(directory: Path, party: str, **validity: dt.datetime) -> pki.Identity:
    """A certificate for ``party`` from a CA in ``directory`` (made if missing)."""
    if not (directory / "ca.key").exists():
        pki.init_ca(directory)
    return pki.issue(directory, party, **validity)


def test_certificate_from_another_ca_is_refused(
    tmp_path: Path, pki_dir: Path, endpoints: dict[str, GrpcEndpoint], addresses: dict[str, str]
) -> None:
    job = _job()
    a = endpoints["a"].channel(job, PARTIES, addresses, timeout=10)
    forged = _stranger(tmp_path / "evil", "b")
    # The impostor even trusts the real CA, so only the server's check can stop it.
    impostor = pki.Identity("b", forged.cert_pem, forged.key_pem, (pki_dir / "ca.pem").read_bytes())
    with GrpcEndpoint(impostor, connect_timeout=1.5) as ep:
        ch = ep.channel(job, PARTIES, addresses, timeout=5)
        with pytest.raises(PeerUnreachable, match="could not reach party 'a'"):
            ch.send("a", "x", np.arange(3))
        ch.close()
    assert a.pending() == 0
    a.close()
    _still_serves(endpoints, addresses)


def test_server_with_certificate_from_another_ca_is_refused(
    tmp_path: Path, pki_dir: Path, endpoints: dict[str, GrpcEndpoint]
) -> None:
    forged = _stranger(tmp_path / "evil", "c")
    fake_server = GrpcEndpoint(forged)  # listens as 'c', but chains to another CA
    try:
        ch = endpoints["a"].channel(_job(), PARTIES, {"b": "127.0.0.1:1", "c": fake_server.address})
        endpoints["a"].connect_timeout = 1.5
        with pytest.raises(PeerUnreachable, match="'c'"):
            ch.send("c", "secret", b"for c only")
        assert fake_server.server._jobs == {}
        ch.close()
    finally:
        endpoints["a"].connect_timeout = 10.0
        fake_server.close(grace=0)


def test_valid_certificate_not_in_job_is_refused(
    pki_dir: Path,
    endpoints: dict[str, GrpcEndpoint],
    addresses: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = _job()
    a = endpoints["a"].channel(job, PARTIES, addresses, timeout=10)
    with GrpcEndpoint(pki.load_identity(pki_dir, "mallory")) as ep:
        # mallory claims a job with herself in it; a's job does not list her
        ch = ep.channel(job, ("a", "mallory"), addresses, timeout=10)
        with (
            caplog.at_level("WARNING", logger="sharedml.transport.grpc"),
            pytest.raises(PeerUnreachable, match="'mallory' is not a peer of job"),
        ):
            ch.send("a", "x", np.arange(3))
        ch.close()
    assert any("not a peer" in r.getMessage() for r in caplog.records)
    assert a.pending() == 0
    a.close()
    _still_serves(endpoints, addresses)


def test_expired_certificate_is_refused(
    tmp_path: Path, pki_dir: Path, endpoints: dict[str, GrpcEndpoint], addresses: dict[str, str]
) -> None:
    # An expired certificate for 'b' from the real CA: right name, right CA, wrong time.
    d = tmp_path / "same-ca"
    d.mkdir()
    for name in ("ca.pem", "ca.key"):
        shutil.copy(pki_dir / name, d / name)
    now = dt.datetime.now(dt.UTC)
    expired = pki.issue(
        d, "b", not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
    )
    job = _job()
    a = endpoints["a"].channel(job, PARTIES, addresses, timeout=10)
    with GrpcEndpoint(expired, connect_timeout=1.5) as ep:
        ch = ep.channel(job, PARTIES, addresses, timeout=5)
        with pytest.raises(PeerUnreachable):
            ch.send("a", "x", np.arange(3))
        ch.close()
    assert a.pending() == 0
    a.close()
    _still_serves(endpoints, addresses)


def _value_messages(tag: str, value: np.ndarray, chunk: int = 1 << 16) -> list[bytes]:
    return list(grpc_wire.messages(tag, value, chunk))


@pytest.mark.parametrize(
    "attack",
    [
        "garbage",
        "bad-version",
        "envelope-overshoots",
        "header-disagrees",
        "huge-claim",
        "shape-overflows",
        "control-tag",
    ],
)
def test_bad_frames_get_a_clear_error_and_the_server_keeps_serving(
    attack: str, pki_dir: Path, endpoints: dict[str, GrpcEndpoint], addresses: dict[str, str]
) -> None:
    job = _job()
    ch = {p: endpoints[p].channel(job, PARTIES, addresses, timeout=10) for p in PARTIES}
    good = _value_messages("ok", np.arange(1000))
    bad = _value_messages("t", np.arange(100_000, dtype=np.uint64))
    if attack == "garbage":
        sequence = [*good, b"\x00garbage that is no envelope" * 3]
    elif attack == "bad-version":
        first = bytearray(bad[0])
        first[4] = 42
        sequence = [bytes(first), *bad[1:]]
    elif attack == "envelope-overshoots":
        sequence = [*bad, b"one chunk too many"]
        sequence[-2] = sequence[-2] + b"!"  # the last real chunk overshoots
    elif attack == "header-disagrees":
        first = bytearray(bad[0])
        struct.pack_into("<Q", first, 8, struct.unpack_from("<Q", first, 8)[0] - 8)
        sequence = [bytes(first), *bad[1:]]
    elif attack == "huge-claim":
        first = bytearray(bad[0])
        struct.pack_into("<Q", first, 8, 1 << 62)
        sequence = [bytes(first)]
    elif attack == "shape-overflows":  # an empty array 2^63 rows wide: no bytes, no array
        (first,) = _value_messages("t", np.zeros((1, 0), dtype=np.uint8))
        patched = bytearray(first)
        struct.pack_into("<Q", patched, 16 + 1 + 8, 2**63)  # envelope, tag, fixed header
        sequence = [bytes(patched)]
    else:  # a tag that would ring the terminal of whoever reads the logs
        first = bytearray(bad[0])
        first[16:17] = b"\x07"
        sequence = [bytes(first), *bad[1:]]
    identity = pki.load_identity(pki_dir, "b")
    code, details = raw_stream(identity, addresses["a"], "a", job, sequence)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed frame" in details
    if attack == "garbage":  # what came before the garbage was filed
        assert np.array_equal(ch["a"].recv("b", "ok"), np.arange(1000))
    with pytest.raises(FrameError, match="'b' sent a malformed frame"):
        ch["a"].recv("b", "t", timeout=10)
    # c, in the same job, and b in a new job, are still served
    ch["c"].send("a", "fine", b"still here")
    assert ch["a"].recv("c", "fine") == b"still here"
    for c in ch.values():
        c.close()
    _still_serves(endpoints, addresses)


def test_stream_ending_inside_a_value_is_a_frame_error(
    pki_dir: Path, endpoints: dict[str, GrpcEndpoint], addresses: dict[str, str]
) -> None:
    job = _job()
    a = endpoints["a"].channel(job, PARTIES, addresses, timeout=10)
    messages = _value_messages("cut", np.arange(100_000))
    code, details = raw_stream(
        pki.load_identity(pki_dir, "c"),
        addresses["a"],
        "a",
        job,
        [*messages[:3], grpc_wire.END_OF_STREAM],
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "ended inside a value" in details
    with pytest.raises(FrameError, match="ended inside a value"):
        a.recv("c", "cut", timeout=10)
    a.close()


def test_stream_for_unknown_job_is_refused(
    pki_dir: Path, endpoints: dict[str, GrpcEndpoint], addresses: dict[str, str]
) -> None:
    endpoints["a"].server.admit_wait = 0.5
    try:
        code, details = raw_stream(
            pki.load_identity(pki_dir, "b"), addresses["a"], "a", "no-such-job", []
        )
    finally:
        endpoints["a"].server.admit_wait = 5.0
    assert code == grpc.StatusCode.NOT_FOUND and "no job 'no-such-job'" in details

"""Limits that keep one hostile or broken peer from exhausting a party (8.3-2, 9.4-2).

A certified peer may flood a receiver with values nobody reads (memory), or
open many streams — for jobs that do not exist, or for a job it is in — to
hold the server's threads. Each test attacks a fresh endpoint over real
mutual TLS and checks that the attacker is contained and everyone else is
still served.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from sharedml.crypto import pki
from sharedml.errors import ChannelError, ConfigError, PeerTimeout
from sharedml.transport import grpc_wire
from sharedml.transport.base import Mailbox
from sharedml.transport.grpc import GrpcEndpoint
from sharedml.transport.grpc_server import JOB_KEY, METHOD, WIRE_KEY

BUDGET = 1 << 20


def _job(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def pair(pki_dir: Path) -> Iterator[dict[str, GrpcEndpoint]]:
    """Fresh endpoints for a (the victim, with a 1 MiB unread budget), b and c."""
    eps = {
        "a": GrpcEndpoint(
            pki.load_identity(pki_dir, "a"),
            connect_timeout=10.0,
            admit_wait=30.0,
            max_frame=BUDGET // 2,
            max_unread=BUDGET,
        ),
        "b": GrpcEndpoint(pki.load_identity(pki_dir, "b"), connect_timeout=10.0, admit_wait=5.0),
        "c": GrpcEndpoint(pki.load_identity(pki_dir, "c"), connect_timeout=10.0, admit_wait=5.0),
    }
    yield eps
    for ep in eps.values():
        ep.close(grace=0)


def _addresses(eps: dict[str, GrpcEndpoint]) -> dict[str, str]:
    return {p: ep.address for p, ep in eps.items()}


def test_unread_values_are_bounded_and_the_flooder_is_told_why(
    pair: dict[str, GrpcEndpoint],
) -> None:
    job = _job("flood")
    peers = ("a", "b", "c")
    ch = {p: pair[p].channel(job, peers, _addresses(pair), timeout=3.0) for p in peers}
    value = np.arange(8192, dtype=np.float64)  # 64 KiB
    sent = 0
    with pytest.raises(PeerTimeout) as info:
        for sent in range(2000):  # 125 MiB: far more than the budget and every buffer
            ch["b"].send("a", "flood", value + sent)
    message = str(info.value)
    assert "'a' holds" in message and "from 'b'" in message
    assert repr(job) in message and "'flood'" in message
    mailbox = pair["a"].server._jobs[job].mailbox
    assert mailbox.unread_bytes(job, "b") <= BUDGET
    assert ch["a"].pending() <= BUDGET // value.nbytes
    # a still hears c in the same job while b's stream is held
    ch["c"].send("a", "other", b"still served")
    assert ch["a"].recv("c", "other") == b"still served"
    # once a reads, b's held values flow again, all of them, in order
    for i in range(sent):
        np.testing.assert_array_equal(ch["a"].recv("b", "flood", timeout=10), value + i)
    assert mailbox.unread_bytes(job, "b") == 0
    for c in ch.values():
        c.close()


@pytest.mark.slow
def test_a_flood_of_tiny_values_is_bounded_too(
    pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    budget = 64 << 10
    a = GrpcEndpoint(pki.load_identity(pki_dir, "a"), max_frame=budget, max_unread=budget)
    b = GrpcEndpoint(pki.load_identity(pki_dir, "b"))
    try:
        job = _job("tiny")
        addresses = {"a": a.address, "b": b.address}
        ca, cb = (ep.channel(job, ("a", "b"), addresses, timeout=10.0) for ep in (a, b))
        with caplog.at_level("WARNING", logger="sharedml.transport.grpc"):
            with contextlib.suppress(PeerTimeout):  # gRPC's buffers may take them all
                for _ in range(20_000):
                    cb.send("a", "t", b"")
            time.sleep(1.0)  # let a's server take what its buffers hold
        # each empty value is charged its bookkeeping, so their number is bounded
        assert 0 < ca.pending() <= budget // Mailbox.charge("t", 0) + 1
        assert any("holds" in r.getMessage() and "'t'" in r.getMessage() for r in caplog.records)
        ca.close()  # the job ends at a: b's held stream is drained, not left hanging
        cb.close()
    finally:
        a.close(grace=0)
        b.close(grace=0)


def test_unread_budget_below_the_largest_value_is_a_config_error(pki_dir: Path) -> None:
    with pytest.raises(ConfigError, match="max_unread"):
        GrpcEndpoint(pki.load_identity(pki_dir, "a"), max_frame=2 << 20, max_unread=1 << 20)


class _Holder:
    """Streams opened by one certified peer that send nothing and never end."""

    def __init__(self, identity: pki.Identity, address: str, server_party: str) -> None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=identity.ca_pem,
            private_key=identity.key_pem,
            certificate_chain=identity.cert_pem,
        )
        options = [("grpc.ssl_target_name_override", server_party)]
        self.conn = grpc.secure_channel(address, credentials, options=options)
        self.release = threading.Event()
        self.calls: list[grpc.Future] = []

    def _silence(self) -> Iterator[bytes]:
        self.release.wait()
        return
        yield b""  # a generator that yields nothing until released

    def open(self, jobs: list[str]) -> None:
        for job in jobs:
            call = self.conn.stream_stream(METHOD)(
                self._silence(),
                metadata=((JOB_KEY, job), (WIRE_KEY, str(grpc_wire.VERSION))),
                timeout=120,
                wait_for_ready=True,
            )
            self.calls.append(call)

    def refused(self) -> int:
        return sum(
            1
            for call in self.calls
            if call.done() and call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        )

    def close(self) -> None:
        for call in self.calls:
            call.cancel()
        self.release.set()
        self.conn.close()


@pytest.mark.parametrize("target", ["unknown-jobs", "its-own-job"])
def test_one_peer_cannot_hold_every_server_thread(
    target: str, pki_dir: Path, pair: dict[str, GrpcEndpoint]
) -> None:
    # mallory holds a deployment certificate. She opens 200 silent streams to a
    # (more than a's 128 threads): for jobs a never heard of, or for a job
    # a really runs with her.
    if target == "its-own-job":
        own = _job("with-mallory")
        pair["a"].server.register(own, ("a", "mallory"))
        jobs = [own] * 200
    else:
        jobs = [_job("bogus") for _ in range(200)]
    mallory = _Holder(pki.load_identity(pki_dir, "mallory"), pair["a"].address, "a")
    try:
        mallory.open(jobs)
        deadline = time.monotonic() + 3  # her streams reach a
        while mallory.refused() < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        # meanwhile a and b run a job of their own, within its 10 s timeout
        job = _job("legit")
        ch = {p: pair[p].channel(job, ("a", "b"), _addresses(pair), timeout=10.0) for p in "ab"}
        start = time.monotonic()
        ch["b"].send("a", "q", np.arange(5))
        np.testing.assert_array_equal(ch["a"].recv("b", "q"), np.arange(5))
        ch["a"].send("b", "r", b"answer")
        assert ch["b"].recv("a", "r") == b"answer"
        for c in ch.values():
            c.close()
        assert time.monotonic() - start < 10
        assert mallory.refused() >= 100  # refused at once, not queued for a thread
    finally:
        mallory.close()
    # her slots are given back when her streams end: she is limited, not locked out
    deadline = time.monotonic() + 10
    while pair["a"].server._streams.get("mallory") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "mallory" not in pair["a"].server._streams


def test_a_stream_refused_while_the_server_is_busy_is_retried(
    pair: dict[str, GrpcEndpoint],
) -> None:
    # With no room for streams waiting on unknown jobs, b's early stream is
    # refused (RESOURCE_EXHAUSTED) until a registers the job; b asks again.
    pair["a"].server.max_waiting_per_peer = 0
    job = _job("early")
    cb = pair["b"].channel(job, ("a", "b"), _addresses(pair), timeout=10.0)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            cb.send("a", "early", b"before you were ready")
        except BaseException as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1.0)
    ca = pair["a"].channel(job, ("a", "b"), _addresses(pair), timeout=10.0)
    sender.join(timeout=20)
    assert errors == []
    assert ca.recv("b", "early") == b"before you were ready"
    cb.close()
    ca.close()


def test_bad_tags_and_job_ids_are_refused_before_sending(
    pair: dict[str, GrpcEndpoint],
) -> None:
    job = _job("tags")
    ch = pair["b"].channel(job, ("a", "b"), _addresses(pair), timeout=5.0)
    for tag in ("x" * 1025, "bell\x07", "line\nbreak", "\ud800"):
        with pytest.raises(ChannelError, match="tag"):
            ch.send("a", tag, b"?")
    ch.close()
    for bad_job in ("", "j" * 257, "tab\there", "jöb"):
        with pytest.raises(ConfigError, match="job id"):
            pair["b"].channel(bad_job, ("a", "b"), _addresses(pair))


def test_server_refuses_absurd_job_ids_at_once(
    pki_dir: Path, pair: dict[str, GrpcEndpoint]
) -> None:
    from _transport_helpers import raw_stream

    start = time.monotonic()
    code, details = raw_stream(
        pki.load_identity(pki_dir, "b"), pair["a"].address, "a", "j" * 4000, []
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "job id" in details
    assert time.monotonic() - start < 10  # not after a's 30 s wait for the job

"""The shaping proxy and the emulated WAN (issue 13 item 8).

Its model is checked exactly on :class:`Pipe` (pure arithmetic); over real
sockets, only what load cannot break is asserted: a link never delivers
sooner than its latency and bandwidth allow (less the half millisecond the
proxy may wake early on each crossing, see ``_TIMER_SLACK``), and what goes
in comes out intact and in order, also under jitter and loss. How close to the model a
loaded machine gets is measured by ``bench/wan.py``, not asserted.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from _wan_parties import psi_party

from sharedml.crypto import pki
from sharedml.errors import ConfigError
from sharedml.standalone import run_in_processes, run_in_threads
from sharedml.transport import traffic
from sharedml.transport.grpc import GrpcEndpoint
from sharedml.transport.shaping import _TIMER_SLACK as EARLY
from sharedml.transport.shaping import MSS, LinkProfile, Pipe
from sharedml.transport.traffic import TrafficMeter
from sharedml.transport.wan import ShapedNetwork


def _pipe(**kw: float) -> Pipe:
    return Pipe(LinkProfile(**kw), np.random.default_rng(0))  # type: ignore[arg-type]


# -- the model -----------------------------------------------------------------------------
def test_pipe_serialises_at_the_bandwidth_then_adds_the_latency() -> None:
    pipe = _pipe(rtt_ms=20.0, bandwidth_mbps=8.0)  # 1 MB/s, 10 ms one way
    first = pipe.arrival(1000, now=0.0, previous=0.0)
    second = pipe.arrival(1000, now=0.0, previous=first)  # queued behind the first
    assert first == pytest.approx(0.001 + 0.010)
    assert second == pytest.approx(0.002 + 0.010)
    later = pipe.arrival(1000, now=1.0, previous=second)  # the link was idle again
    assert later == pytest.approx(1.001 + 0.010)
    assert pipe.stats.bytes == 3000 and pipe.stats.segments == 3


def test_jitter_never_reorders_a_stream() -> None:
    pipe = _pipe(rtt_ms=20.0, jitter_ms=8.0)
    last, arrivals = 0.0, []
    for i in range(500):
        last = pipe.arrival(100, now=i * 1e-4, previous=last)
        arrivals.append(last)
    assert arrivals == sorted(arrivals)
    delays = np.array(arrivals) - np.arange(500) * 1e-4
    assert delays.min() >= 0.010 - 0.008 - 1e-12
    assert delays.max() > 0.015  # the jitter really moves segments


def test_loss_delays_by_a_retransmission_and_caps_the_rate() -> None:
    profile = LinkProfile(rtt_ms=50.0, bandwidth_mbps=1000.0, loss=0.01)
    assert profile.bytes_per_s == pytest.approx(1.22 * MSS / (0.05 * math.sqrt(0.01)))
    pipe = Pipe(profile, np.random.default_rng(1))
    extra = [pipe.arrival(MSS, now=t * 10.0, previous=0.0) - t * 10.0 for t in range(2000)]
    base = 0.025 + MSS / profile.bytes_per_s
    late = [e for e in extra if e > base + 1e-9]
    assert pipe.stats.lost_packets == len(late) > 0
    assert all(e == pytest.approx(base + 0.05) for e in late)
    assert 0.003 < len(late) / 2000 < 0.02  # about the 1% asked for


def test_profiles_refuse_impossible_values() -> None:
    for bad in ({"rtt_ms": -1.0}, {"loss": 1.0}, {"bandwidth_mbps": 0.0}, {"loss": 0.1}):
        with pytest.raises(ConfigError):
            LinkProfile(**bad)  # type: ignore[arg-type]


# -- over real sockets -------------------------------------------------------------------------
@pytest.fixture
def echo_server() -> Iterator[str]:
    """A plain TCP echo server on loopback (one thread per connection)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1 << 16):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def _echo_through(net: ShapedNetwork, payload: bytes) -> tuple[bytes, float]:
    host, port = net.route("client", "echo").rsplit(":", 1)
    received = bytearray()
    with socket.create_connection((host, int(port))) as sock:
        start = time.monotonic()

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=send)
        writer.start()
        while chunk := sock.recv(1 << 16):
            received += chunk
        writer.join()
        return bytes(received), time.monotonic() - start


def test_round_trip_takes_at_least_the_link_latency(echo_server: str) -> None:
    with ShapedNetwork(LinkProfile(rtt_ms=60.0)) as net:
        net.register("echo", echo_server)
        got, seconds = _echo_through(net, b"ping")
    assert got == b"ping"
    assert seconds >= 0.060 + 0.060 - 2 * EARLY  # TCP's handshake, then one round trip


def test_a_transfer_takes_at_least_its_bytes_over_the_bandwidth(echo_server: str) -> None:
    payload = os.urandom(1 << 20)
    with ShapedNetwork(LinkProfile(rtt_ms=2.0, bandwidth_mbps=40.0)) as net:
        net.register("echo", echo_server)
        got, seconds = _echo_through(net, payload)
        stats = net.stats()
    assert got == payload
    assert seconds >= len(payload) * 8 / 40e6 - 2 * EARLY  # each direction: 40 Mbit/s
    assert stats["client->echo"]["bytes"] == stats["echo->client"]["bytes"] == len(payload)


def test_bytes_arrive_intact_and_in_order_under_jitter_and_loss(echo_server: str) -> None:
    payload = os.urandom(3 << 20)
    profile = LinkProfile(rtt_ms=4.0, jitter_ms=3.0, bandwidth_mbps=400.0, loss=0.002)
    with ShapedNetwork(profile, seed=7) as net:
        net.register("echo", echo_server)
        got, _ = _echo_through(net, payload)
        lost = sum(s["lost_packets"] for s in net.stats().values())
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert lost > 0  # the loss model was exercised


def test_a_proxy_waits_for_its_target_to_join(echo_server: str) -> None:
    with ShapedNetwork(LinkProfile(rtt_ms=2.0)) as net:
        address = net.route("client", "echo")  # before the echo server joined
        timer = threading.Timer(0.3, net.register, args=("echo", echo_server))
        timer.start()
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"early")
            assert sock.recv(16) == b"early"
        timer.join()


def test_grpc_connects_once_over_a_slow_link(tmp_path: Path) -> None:
    """One TLS handshake per connection at 150 ms RTT (gRPC aborted them at 50 ms before)."""
    pki.init_ca(tmp_path)
    eps = {p: GrpcEndpoint(pki.issue(tmp_path, p), connect_timeout=30) for p in "ab"}
    try:
        with ShapedNetwork(LinkProfile(rtt_ms=150.0)) as net:
            for p, ep in eps.items():
                net.register(p, ep.address)
            job = f"slow-{uuid.uuid4().hex[:6]}"
            routes = {"a": net.route("b", "a"), "b": net.route("a", "b")}
            ch = {p: eps[p].channel(job, "ab", routes, timeout=30) for p in "ab"}
            ch["a"].send("b", "x", np.arange(3))
            assert np.array_equal(ch["b"].recv("a", "x"), np.arange(3))
            for c in ch.values():
                c.close()
            assert net._proxies[("a", "b")].connections == 1
    finally:
        for ep in eps.values():
            ep.close(grace=0.2)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["kkrt", "ecdh"])
def test_psi_across_processes_over_a_lossy_wan_matches_loopback(protocol: str) -> None:
    profile = LinkProfile(rtt_ms=20.0, jitter_ms=5.0, bandwidth_mbps=50.0, loss=0.001)
    with ShapedNetwork(profile, seed=3) as net:
        out = run_in_processes(
            partial(psi_party, protocol), ["A", "B"], wrap=net.joiner(then=TrafficMeter),
            timeout=120,
        )
        stats = net.stats()
    expected = sorted(f"u{i}" for i in range(1000, 2000))
    assert out["A"]["ids"] == out["B"]["ids"] == expected
    logs = {p: out[p]["events"] for p in "AB"}
    payload = traffic.link_bytes(logs)
    for link in (("A", "B"), ("B", "A")):
        carried = stats[f"{link[0]}->{link[1]}"]["bytes"]
        assert carried > payload[link]  # every payload byte crossed the shaped link (+ TLS)
    assert traffic.rounds(logs) >= 2


def test_rounds_follow_the_chain_of_dependent_messages() -> None:
    from sharedml.transport.traffic import Event

    def s(peer: str, tag: str) -> Event:
        return Event("send", peer, tag, 8)

    def r(peer: str, tag: str) -> Event:
        return Event("recv", peer, tag, 8)

    ping_pong = {
        "a": [s("b", "p"), r("b", "q"), s("b", "p"), r("b", "q")],
        "b": [r("a", "p"), s("a", "q"), r("a", "p"), s("a", "q")],
    }
    assert traffic.rounds(ping_pong) == 4
    exchange = {  # both send, then both receive: one round, twice
        "a": [s("b", "x"), r("b", "x"), s("b", "y"), r("b", "y")],
        "b": [s("a", "x"), r("a", "x"), s("a", "y"), r("a", "y")],
    }
    assert traffic.rounds(exchange) == 2
    relay = {  # a -> b -> c, while a also sends c something in parallel
        "a": [s("b", "m"), s("c", "n")],
        "b": [r("a", "m"), s("c", "m")],
        "c": [r("b", "m"), r("a", "n")],
    }
    assert traffic.rounds(relay) == 2
    assert traffic.link_bytes(relay) == {("a", "b"): 8, ("a", "c"): 8, ("b", "c"): 8}
    with pytest.raises(ConfigError, match="no log shows being sent"):
        traffic.rounds({"a": [r("b", "ghost")], "b": []})


def test_the_meter_counts_what_a_protocol_sends() -> None:
    def party(session: object) -> list[traffic.Event]:
        ch = session.channel  # type: ignore[attr-defined]
        other = "b" if ch.party == "a" else "a"
        ch.send(other, "v", np.zeros(10))
        ch.recv(other, "v")
        ch.scope("step").send(other, "w", b"abc")
        ch.scope("step").recv(other, "w")
        assert ch.sent_bytes() == {other: 83}
        return list(ch.events)

    out = run_in_threads(party, ["a", "b"], wrap=TrafficMeter)
    assert traffic.rounds(out) == 2
    assert [e.tag for e in out["a"]] == ["v", "v", "step/w", "step/w"]



def test_the_shape_command_puts_a_link_in_front_of_a_server(echo_server: str) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "sharedml.cli", "shape", "127.0.0.1:0", echo_server, "--rtt", "80"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        host, port = proc.stdout.readline().strip().rsplit(":", 1)
        with socket.create_connection((host, int(port))) as sock:
            start = time.monotonic()
            sock.sendall(b"ping")
            assert sock.recv(16) == b"ping"
            assert time.monotonic() - start >= 0.080 + 0.080 - 2 * EARLY
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = subprocess.run(
        [sys.executable, "-m", "sharedml.cli", "shape", "nowhere", echo_server],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "is not HOST:PORT" in bad.stdout + bad.stderr

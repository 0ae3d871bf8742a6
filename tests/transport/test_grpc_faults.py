"""Faults over real gRPC: silent peers, unreachable peers, peers that die mid-stream.

Every fault must end in a clear sharedml error within the configured time —
never a hang.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from _transport_helpers import die_mid_stream, serve_then_hang

from sharedml.crypto import pki
from sharedml.errors import ChannelError, ConfigError, PeerTimeout, PeerUnreachable
from sharedml.transport.grpc import GrpcEndpoint

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture()
def own_pki(tmp_path: Path) -> Path:
    pki.init_ca(tmp_path)
    for party in ("x", "y"):
        pki.issue(tmp_path, party)
    return tmp_path


@pytest.fixture()
def x_endpoint(own_pki: Path) -> Iterator[GrpcEndpoint]:
    ep = GrpcEndpoint(pki.load_identity(own_pki, "x"), connect_timeout=5.0)
    yield ep
    ep.close(grace=0)


def _kill(proc: multiprocessing.process.BaseProcess) -> None:
    if proc.pid is not None and proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=10)


@contextmanager
def _hanging_y(
    own_pki: Path, job: str
) -> Iterator[tuple[str, multiprocessing.process.BaseProcess]]:
    """Party y in its own process: serves ``job``, then never answers; killed on exit."""
    parent_end, child_end = SPAWN.Pipe()
    proc = SPAWN.Process(
        target=serve_then_hang, args=(str(own_pki), "y", job, ["x", "y"], child_end)
    )
    proc.start()
    try:
        yield parent_end.recv(), proc
    finally:
        _kill(proc)


def test_peer_that_never_answers_gives_peer_timeout(
    own_pki: Path, x_endpoint: GrpcEndpoint
) -> None:
    job = f"silent-{uuid.uuid4().hex[:6]}"
    with _hanging_y(own_pki, job) as (address, _):
        ch = x_endpoint.channel(job, ("x", "y"), {"y": address}, timeout=1.0)
        ch.send("y", "question", b"anyone there?")  # y is up and admits the stream
        start = time.monotonic()
        with pytest.raises(PeerTimeout) as info:
            ch.recv("y", "answer")
        elapsed = time.monotonic() - start
        assert "'y'" in str(info.value) and "answer" in str(info.value)
        assert 1.0 <= elapsed < 4.0
        ch.close()


def test_unreachable_peer_after_retries(x_endpoint: GrpcEndpoint) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    x_endpoint.connect_timeout = 1.0
    ch = x_endpoint.channel("nobody", ("x", "y"), {"y": f"127.0.0.1:{port}"}, timeout=5)
    start = time.monotonic()
    with pytest.raises(PeerUnreachable, match=r"could not reach party 'y'.*attempts") as info:
        ch.send("y", "t", b"hello")
    assert 1.0 <= time.monotonic() - start < 4.0
    attempts = int(str(info.value).split("(")[1].split(" attempts")[0])
    assert attempts >= 3  # it retried, backing off
    ch.close()


def test_peer_dying_mid_stream_gives_channel_error(own_pki: Path, x_endpoint: GrpcEndpoint) -> None:
    job = f"dies-{uuid.uuid4().hex[:6]}"
    ch = x_endpoint.channel(job, ("x", "y"), {"y": "127.0.0.1:1"}, timeout=60)
    started = SPAWN.Event()
    proc = SPAWN.Process(
        target=die_mid_stream, args=(str(own_pki), "y", "x", x_endpoint.address, job, started)
    )
    proc.start()
    try:
        assert started.wait(30), "the child never began its value"
        _kill(proc)
        start = time.monotonic()
        with pytest.raises(ChannelError, match=r"'y' disconnected mid-stream") as info:
            ch.recv("y", "big")
        assert not isinstance(info.value, PeerTimeout)
        assert "of tag 'big'" in str(info.value)
        assert time.monotonic() - start < 30  # far below the 60 s receive timeout
    finally:
        _kill(proc)
        ch.close()


def test_sending_to_a_peer_that_died_gives_channel_error(
    own_pki: Path, x_endpoint: GrpcEndpoint
) -> None:
    job = f"gone-{uuid.uuid4().hex[:6]}"
    with _hanging_y(own_pki, job) as (address, proc):
        ch = x_endpoint.channel(job, ("x", "y"), {"y": address}, timeout=20)
        ch.send("y", "first", np.zeros(10))
        _kill(proc)
        start = time.monotonic()
        with pytest.raises(ChannelError) as info:
            for i in range(10_000):
                ch.send("y", f"more{i}", np.zeros(100_000))
        assert "'y'" in str(info.value)
        assert time.monotonic() - start < 20
        with pytest.raises(ChannelError):
            ch.close()


def test_configuration_mistakes_are_clear(own_pki: Path, x_endpoint: GrpcEndpoint) -> None:
    with pytest.raises(ConfigError, match="could not listen"):
        GrpcEndpoint(pki.load_identity(own_pki, "y"), port=x_endpoint.server.port)
    with pytest.raises(ConfigError, match=r"no address for parties \['y'\]"):
        x_endpoint.channel("cfg", ("x", "y"), {})
    ch = x_endpoint.channel("twice", ("x", "y"), {"y": "127.0.0.1:1"})
    with pytest.raises(ConfigError, match="already has an open channel"):
        x_endpoint.channel("twice", ("x", "y"), {"y": "127.0.0.1:1"})
    ch.close()
    x_endpoint.channel("twice", ("x", "y"), {"y": "127.0.0.1:1"}).close()  # free again

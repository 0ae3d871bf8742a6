"""One contract suite for the Channel seam, run against every backend (STYLE.md 8).

``LocalChannel`` (threads in one process) and ``GrpcChannel`` (real gRPC with
mutual TLS over loopback, one server per party shared by every job) must
behave the same for everything protocol code relies on.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from _transport_helpers import run_threads

from sharedml.errors import ChannelError, PeerTimeout
from sharedml.transport import Channel, LocalHub
from sharedml.transport.codec import _DTYPES
from sharedml.transport.grpc import GrpcEndpoint

PARTIES = ("a", "b", "c")
MakeChannels = Callable[..., dict[str, Channel]]


@pytest.fixture(params=["local", "grpc"])
def make_channels(
    request: pytest.FixtureRequest,
) -> Iterator[MakeChannels]:
    """A factory of per-party channels for a fresh job on the backend under test."""
    opened: list[Channel] = []
    hub = LocalHub(PARTIES)

    def make(job: str | None = None, timeout: float = 60.0) -> dict[str, Channel]:
        job = job or f"job-{uuid.uuid4().hex[:8]}"
        if request.param == "local":
            channels: dict[str, Channel] = dict(hub.channels(job, timeout))
        else:
            endpoints: dict[str, GrpcEndpoint] = request.getfixturevalue("endpoints")
            addresses = {p: ep.address for p, ep in endpoints.items()}
            channels = {p: endpoints[p].channel(job, PARTIES, addresses, timeout) for p in PARTIES}
        opened.extend(channels.values())
        return channels

    yield make
    for ch in opened:
        ch.close()


def _examples() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    for dtype in _DTYPES.values():
        if dtype == np.bool_:
            arr = rng.integers(0, 2, size=(5, 3)).astype(bool)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            arr = rng.integers(info.min, info.max, size=(4, 6), dtype=dtype, endpoint=True)
        else:
            arr = rng.standard_normal((3, 2, 2)).astype(dtype)
        out.append(arr)
    # uint64 at the top of the ring: values >= 2^63 must survive untouched
    out.append(np.array([0, 1, 2**63, 2**63 + 5, 2**64 - 1], dtype=np.uint64))
    out.append(np.arange(12, dtype=np.int64).reshape(3, 4).T)  # not C-contiguous
    out.append(np.arange(6, dtype=">i4"))  # big-endian input
    out.append(np.array([np.inf, -np.inf, np.nan, -0.0]))
    return out


def test_round_trips_every_dtype(make_channels: MakeChannels) -> None:
    ch = make_channels()
    sent = _examples()
    for i, arr in enumerate(sent):
        ch["a"].send("b", f"v{i}", arr)
    for i, arr in enumerate(sent):
        got = ch["b"].recv("a", f"v{i}")
        assert isinstance(got, np.ndarray)
        assert got.dtype == arr.dtype.newbyteorder("<") and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
        got[...] = got  # received arrays are writable
    ch["a"].send("b", "u64", np.array([2**64 - 1], dtype=np.uint64))
    assert int(ch["b"].recv("a", "u64")[0]) == 2**64 - 1


def test_zero_d_empty_and_bytes(make_channels: MakeChannels) -> None:
    ch = make_channels()
    values: list[np.ndarray | bytes] = [
        np.array(3.5),
        np.array(2**63 + 1, dtype=np.uint64),
        np.zeros(0),
        np.zeros((3, 0), dtype=np.int32),
        b"",
        b"\x00hello\xff" * 1000,
    ]
    for i, v in enumerate(values):
        ch["b"].send("c", f"x{i}", v)
    for i, v in enumerate(values):
        got = ch["c"].recv("b", f"x{i}")
        if isinstance(v, bytes):
            assert got == v and isinstance(got, bytes)
        else:
            assert isinstance(got, np.ndarray)
            assert got.shape == v.shape and got.dtype == v.dtype
            np.testing.assert_array_equal(got, v)


@pytest.mark.slow
def test_200_mb_array(make_channels: MakeChannels) -> None:
    ch = make_channels()
    big = np.arange(25 * 2**20, dtype=np.uint64)  # 200 MiB
    big[::4099] = 2**64 - 7
    ch["a"].send("b", "big", big)
    got = ch["b"].recv("a", "big")
    assert isinstance(got, np.ndarray) and got.nbytes == 200 * 2**20
    assert np.array_equal(got, big)


def test_thousand_messages_out_of_order(make_channels: MakeChannels) -> None:
    ch = make_channels()
    order = list(range(1000))
    random.Random(1).shuffle(order)
    for i in order:
        ch["a"].send("b", f"m{i}", np.array([i, 2**63 + i], dtype=np.uint64))
    for i in range(1000):  # read in another order than sent
        got = ch["b"].recv("a", f"m{999 - i}")
        assert got.tolist() == [999 - i, 2**63 + 999 - i]
    # under one tag, values arrive in the order sent
    for i in range(100):
        ch["a"].send("b", "fifo", np.array([i]))
    assert [int(ch["b"].recv("a", "fifo")[0]) for _ in range(100)] == list(range(100))


def test_concurrent_jobs_with_same_tags_are_kept_apart(make_channels: MakeChannels) -> None:
    jobs = {job: make_channels(job) for job in (f"j1-{uuid.uuid4().hex}", f"j2-{uuid.uuid4().hex}")}

    def party(job: str, marker: int) -> Callable[[Channel], list[int]]:
        def body(c: Channel) -> list[int]:
            c.broadcast("x", np.full(100, marker + PARTIES.index(c.party)))
            return [int(c.recv(p, "x")[0]) for p in PARTIES if p != c.party]

        return body

    out: dict[str, dict[str, list[int]]] = {}

    def run(job: str, marker: int) -> None:
        out[job] = run_threads(jobs[job], party(job, marker))

    threads = [
        threading.Thread(target=run, args=(job, marker))
        for job, marker in zip(jobs, (100, 200), strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for job, marker in zip(jobs, (100, 200), strict=True):
        for p, got in out[job].items():
            expected = [marker + PARTIES.index(q) for q in PARTIES if q != p]
            assert got == expected


def test_broadcast_gather_all_gather(make_channels: MakeChannels) -> None:
    ch = make_channels()

    def body(c: Channel) -> tuple[object, dict[str, object]]:
        mine = np.array([PARTIES.index(c.party) + 1.0])
        gathered = c.gather("g", mine, root="b")
        every = c.all_gather("ag", mine)
        if c.party == "a":
            c.broadcast("bc", b"from a")
        heard = c.recv("a", "bc") if c.party != "a" else b"from a"
        return gathered, {"every": {p: float(v[0]) for p, v in every.items()}, "heard": heard}

    res = run_threads(ch, body)
    assert res["a"][0] is None and res["c"][0] is None
    assert {p: float(v[0]) for p, v in res["b"][0].items()} == {"a": 1.0, "b": 2.0, "c": 3.0}
    for p in PARTIES:
        assert res[p][1]["every"] == {"a": 1.0, "b": 2.0, "c": 3.0}
        assert res[p][1]["heard"] == b"from a"


def test_scope_namespaces_tags(make_channels: MakeChannels) -> None:
    ch = make_channels()
    ch["a"].scope("step1").send("b", "x", b"scoped")
    ch["a"].send("b", "x", b"plain")
    ch["a"].scope("step1").scope("inner").send("b", "x", b"nested")
    assert ch["b"].recv("a", "x") == b"plain"
    assert ch["b"].scope("step1").recv("a", "x") == b"scoped"
    assert ch["b"].recv("a", "step1/inner/x") == b"nested"


def test_recv_times_out_naming_peer_and_tag(make_channels: MakeChannels) -> None:
    ch = make_channels()
    start = time.monotonic()
    with pytest.raises(PeerTimeout) as info:
        ch["a"].recv("c", "never-sent", timeout=0.5)
    elapsed = time.monotonic() - start
    assert "'c'" in str(info.value) and "never-sent" in str(info.value)
    assert 0.5 <= elapsed < 5.0


def test_unknown_peer_and_self_are_refused(make_channels: MakeChannels) -> None:
    ch = make_channels()
    with pytest.raises(ChannelError, match="not a peer"):
        ch["a"].send("mallory", "x", b"?")
    with pytest.raises(ChannelError, match="itself"):
        ch["a"].send("a", "x", b"?")


def test_sent_array_may_change_after_send(make_channels: MakeChannels) -> None:
    ch = make_channels()
    arr = np.arange(300_000, dtype=np.float64)
    ch["a"].send("b", "snap", arr)
    arr[:] = -1
    got = ch["b"].recv("a", "snap")
    assert np.array_equal(got, np.arange(300_000, dtype=np.float64))

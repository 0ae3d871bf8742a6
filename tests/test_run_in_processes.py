"""run_in_processes: every party in its own process over gRPC with mutual TLS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sharedml.errors import ConfigError
from sharedml.session import Session
from sharedml.standalone import (
    PartyCrashed,
    PartyFailed,
    processes,
    run_in_processes,
    run_in_threads,
)
from sharedml.transport import Channel, WireRecord
from sharedml.transport.grpc import GrpcChannel


def ring_sum(session: Session, greeting: str | None = None) -> dict[str, Any]:
    """Each party passes its index to the next one round the ring and sums what it hears."""
    me = session.index
    n = len(session.peers)
    nxt, prev = session.peers[(me + 1) % n], session.peers[(me - 1) % n]
    session.channel.send(nxt, "ring", np.array([me + 1], dtype=np.uint64) << np.uint64(60))
    got = session.channel.recv(prev, "ring")
    every = session.channel.all_gather("all", np.array([float(me)]))
    return {
        "pid": os.getpid(),
        "from_prev": int(got[0]),
        "sum": sum(float(v[0]) for v in every.values()),
        "transport": type(session.channel).__name__,
        "noise": session.rng("t").random(),
        "extra": greeting,
    }


def fail_in_b(session: Session) -> None:
    if session.party == "b":
        raise ValueError("b cannot go on")
    session.channel.recv("b", "never")  # a waits for b, which failed


def record_pid_then(folder: Path, session: Session) -> None:
    (folder / f"{session.party}.tmp").write_text(str(os.getpid()))
    (folder / f"{session.party}.tmp").rename(folder / f"{session.party}.pid")
    if session.party == "b":
        deadline = time.monotonic() + 30
        while not (folder / "a.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # fail only once the other party is surely running
        raise RuntimeError("stop the run")
    time.sleep(120)  # the other party would hang; the launcher must stop it


def crash_hard(session: Session) -> None:
    if session.party == "b":
        os._exit(7)
    session.channel.recv("b", "never")


def start_own_worker(session: Session) -> int | None:
    """Party code may start processes of its own (e.g. scikit-learn's n_jobs)."""
    import multiprocessing

    worker = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    worker.start()
    worker.join(timeout=60)
    return worker.exitcode


def say_hi(session: Session) -> str:
    return f"hi from {session.party}"


def say_bye(session: Session) -> str:
    return f"bye from {session.party}"


def audit_scope(channel: Channel) -> Channel:
    """A picklable wrap: every message of the audited run goes under ``audit/``."""
    return channel.scope("audit")


def masked_sum(secret: np.ndarray, leak: bool, session: Session) -> dict[str, Any]:
    """Two parties learn x_a + x_b (mod 2^64) from additive shares; x leaves no party."""
    x = np.asarray(secret, dtype=np.uint64)
    other = next(p for p in session.peers if p != session.party)
    mask = session.rng("mask").integers(0, 2**63, size=x.shape, dtype=np.uint64) * np.uint64(2)
    session.channel.send(other, "share", x - mask)  # the other party's share of x
    share = mask + np.asarray(session.channel.recv(other, "share"), dtype=np.uint64)
    if leak:
        session.channel.send(other, "oops", x)  # a bug the audit must catch
        session.channel.recv(other, "oops")
    total = sum(session.channel.all_gather("open", share).values(), np.zeros_like(x))
    return {"total": total, "channel": type(session.channel).__name__}


@pytest.mark.slow
def test_wrap_and_wire_record_across_processes() -> None:
    rng = np.random.default_rng(3)
    secrets = {p: rng.integers(2**40, 2**63, size=64, dtype=np.uint64) for p in ("a", "b")}
    for leak in (False, True):
        log: list[WireRecord] = []
        fns = {p: partial(masked_sum, secrets[p], leak) for p in secrets}  # each its own secret
        out = run_in_processes(fns, ["a", "b"], wrap=audit_scope, record=log)
        expected = secrets["a"] + secrets["b"]
        assert all(np.array_equal(r["total"], expected) for r in out.values())
        assert {r["channel"] for r in out.values()} == {"ScopedChannel"}  # wrap ran in each child
        # the log came back from both processes, beneath the wrap (tags carry its scope)
        assert {(r.frm, r.to) for r in log} == {("a", "b"), ("b", "a")}
        assert {r.tag for r in log} >= {"audit/share", "audit/open"}
        leaked = {
            (r.frm, r.tag)
            for r in log
            for p, x in secrets.items()
            if p == r.frm and any(v.tobytes() in r.as_bytes() for v in x[:8])
        }
        assert leaked == ({("a", "audit/oops"), ("b", "audit/oops")} if leak else set())


def send_then_fail(session: Session) -> None:
    if session.party == "a":
        session.channel.send("b", "before-the-fall", b"sent")
        raise RuntimeError("a gives up")
    session.channel.recv("a", "before-the-fall")


def test_wire_record_comes_back_from_a_failed_run() -> None:
    # what the failing party sent is what an audit of the failure needs most
    log: list[WireRecord] = []
    with pytest.raises(PartyFailed, match="a gives up"):
        run_in_processes(send_then_fail, ["a", "b"], timeout=30, record=log)
    assert [(r.frm, r.to, r.tag, r.value) for r in log] == [("a", "b", "before-the-fall", b"sent")]


def test_unpicklable_wrap_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="wrap"):
        run_in_processes(say_hi, ["a"], wrap=lambda ch: ch)


def test_results_come_back_from_separate_processes() -> None:
    parties = ["a", "b", "c"]
    fns = {"a": ring_sum, "b": partial(ring_sum, greeting="hello"), "c": ring_sum}
    out = run_in_processes(fns, parties, seed=b"s" * 32)
    assert set(out) == set(parties)
    assert len({r["pid"] for r in out.values()} | {os.getpid()}) == 4
    assert all(r["transport"] == "GrpcChannel" for r in out.values())
    for i, p in enumerate(parties):
        prev = (i - 1) % 3
        assert out[p]["from_prev"] == (prev + 1) << 60
        assert out[p]["sum"] == 3.0
    assert out["b"]["extra"] == "hello" and out["a"]["extra"] is None
    # the same seed gives every party the same randomness as in-process simulation
    local = run_in_threads(ring_sum, parties, seed=b"s" * 32)
    assert {p: r["noise"] for p, r in out.items()} == {p: r["noise"] for p, r in local.items()}
    assert GrpcChannel.__name__ == "GrpcChannel"


def test_mapping_of_functions() -> None:
    assert run_in_processes({"a": say_hi, "b": say_bye}, ["a", "b"]) == {
        "a": "hi from a",
        "b": "bye from b",
    }


def test_parties_may_start_their_own_processes() -> None:
    assert run_in_processes(start_own_worker, ["a"]) == {"a": 0}


def test_failure_names_party_and_carries_traceback() -> None:
    with pytest.raises(PartyFailed) as info:
        run_in_processes(fail_in_b, ["a", "b"], timeout=60)
    assert info.value.party == "b"
    assert isinstance(info.value.error, ValueError)
    message = str(info.value)
    assert "b cannot go on" in message and "fail_in_b" in message and "Traceback" in message


def test_no_process_outlives_a_failed_run(tmp_path: Path) -> None:
    with pytest.raises(PartyFailed, match="stop the run"):
        run_in_processes(partial(record_pid_then, tmp_path), ["a", "b"])
    pids = [int((tmp_path / f"{p}.pid").read_text()) for p in "ab"]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_crashed_process_fails_the_run() -> None:
    with pytest.raises(PartyFailed) as info:
        run_in_processes(crash_hard, ["a", "b"], timeout=60)
    assert info.value.party == "b"
    assert isinstance(info.value.error, PartyCrashed) and "exit code 7" in str(info.value)


def test_a_party_still_starting_when_the_wait_ends_is_named_with_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wait for the children's servers is the run's timeout when that is longer than
    STARTUP_TIMEOUT (here 0, so the run's 0.01 s decides); a child still starting then is
    reported as such, not as an unguarded script."""
    monkeypatch.setattr(processes, "STARTUP_TIMEOUT", 0.0)
    with pytest.raises(PartyFailed) as info:
        run_in_processes(ring_sum, ["a", "b"], timeout=0.01)
    assert isinstance(info.value.error, PartyCrashed) and info.value.party == "a"
    assert "within 0.01 s" in str(info.value.error)
    assert "longer timeout" in (info.value.error.remedy or "")


def test_unpicklable_function_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="module-level function"):
        run_in_processes(lambda s: None, ["a", "b"])


def test_children_die_with_their_parent(tmp_path: Path) -> None:
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from functools import partial
            from pathlib import Path
            from sharedml.standalone import run_in_processes
            import test_run_in_processes as under_test

            if __name__ == "__main__":
                run_in_processes(partial(under_test.record_pid_then, Path({str(tmp_path)!r})),
                                 ["a", "c"])
            """
        )
    )
    launcher = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"{p}.pid").exists() for p in "ac"):
            assert time.monotonic() < deadline and launcher.poll() is None
            time.sleep(0.1)
        pids = [int((tmp_path / f"{p}.pid").read_text()) for p in "ac"]
        os.kill(launcher.pid, signal.SIGKILL)  # the orchestrator dies without cleaning up
        launcher.wait()
        deadline = time.monotonic() + 20
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in pids if _alive(pid)]
            time.sleep(0.1)
        assert alive == [], "party processes outlived their parent"
    finally:
        if launcher.poll() is None:
            launcher.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False

"""Run one function per party, each in its own OS process, over gRPC with mutual TLS.

:func:`run_in_processes` takes the arguments of
:func:`~sharedml.standalone.threads.run_in_threads` (one
:class:`~sharedml.standalone.options.RunOptions`) and means the same, but
every party is a separate process (``spawn``) with its own
:class:`~sharedml.transport.grpc.GrpcEndpoint` on loopback, holding a
certificate issued by a CA made for this run in a temporary directory (each
process is handed its own key only). Integration tests, benchmarks and
``sharedml run`` use it; no platform is involved.

The parent is the orchestrator, not a party: it starts the processes, tells
each where the others listen, collects results (pickled between parent and
child only — never between parties) and stops everyone. Start-up and
shut-down go in three steps so no party's server disappears while a peer
still sends to it:

1. each child starts its server on a free port and reports the port;
2. the parent sends every child the address book; children run ``fn``,
   flush their channel and report the result or their traceback (and, when
   asked, the record of everything the party sent, for wire audits);
3. once all have reported (or one failed), the parent tells the children to
   exit, then terminates any that linger. A child whose parent dies exits
   by itself (it watches its pipe), so no process is orphaned.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Unpack

from sharedml.crypto import pki
from sharedml.errors import ChannelError, ConfigError, SharedMLError
from sharedml.session import Session
from sharedml.standalone.options import (
    PartyFailed,
    PartyFn,
    PartySettings,
    RunOptions,
    RunSettings,
    party_fn,
    raise_first_failure,
)
from sharedml.transport.recording import RecordingChannel, WireRecord

log = logging.getLogger("sharedml.standalone.processes")

#: How long the parent waits at least for the children to start their servers; a run's
#: longer ``timeout`` (how long a party waits for a peer) extends it: each child imports
#: the party's function and its libraries first, which on a loaded machine, several
#: children at once, can take longer than a minute.
STARTUP_TIMEOUT = 60.0
#: After a party fails, how long the others get to report before they are stopped.
FAILURE_GRACE = 2.0


class PartyCrashed(SharedMLError):
    """A party's process ended without reporting (killed, crashed, exited)."""


class RemoteError(SharedMLError):
    """Stands for a party's exception that could not be brought back as itself."""


def run_in_processes(
    fn: PartyFn | Mapping[str, PartyFn],
    parties: Sequence[str],
    *,
    record: list[WireRecord] | None = None,
    **options: Unpack[RunOptions],
) -> dict[str, Any]:
    """Run ``fn`` (or ``fn[party]``) for every party in its own process; return results by party.

    ``options`` are the :class:`~sharedml.standalone.options.RunOptions` of
    :func:`~sharedml.standalone.threads.run_in_threads`, with the same meaning; ``wrap``
    runs in each party's process. ``fn`` must be picklable by reference (a
    module-level function, a :func:`functools.partial` of one with picklable
    arguments — how a party gets its inputs — or a mapping of them); so must
    ``wrap`` and the results. Each process is handed its own function and seed
    only. If a party raises, the run raises :class:`PartyFailed` with that
    party's name and traceback (the first party that failed for a reason other
    than a peer's failure).

    With ``record`` (a list), each party's gRPC channel is wrapped in a
    :class:`~sharedml.transport.recording.RecordingChannel` beneath ``wrap``,
    so it sees what really went on the wire, and ``record`` is extended with
    every party's wire records
    (:class:`~sharedml.transport.recording.WireRecord`): party by party in
    ``parties`` order, each party's in the order it sent. When the run fails,
    it holds the records of every party that reported (the failed one
    included); a party stopped while still running reports none.
    """
    parties = list(parties)
    if len(set(parties)) != len(parties) or not parties:
        raise SharedMLError(f"parties must be distinct and non-empty, got {parties}")
    run = RunSettings(**options)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="sharedml-processes-") as pki_dir:
        pki.init_ca(pki_dir)
        for party in parties:
            pki.issue(pki_dir, party)
        pipes: dict[str, Connection] = {}
        procs: dict[str, multiprocessing.process.BaseProcess] = {}
        try:
            for party in parties:
                spec = _ChildSpec(
                    run.for_party(party, parties),
                    pki.load_identity(pki_dir, party),  # this party's key only
                    record is not None,
                )
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=_child_main,
                    args=(party_fn(fn, party), spec, child_end),
                    name=f"sharedml-{party}",
                    daemon=False,  # a party may start worker processes of its own
                )
                try:
                    proc.start()
                except (pickle.PicklingError, AttributeError, TypeError) as exc:
                    raise ConfigError(
                        f"cannot send the function or wrap of party {party!r} to its "
                        f"process: {exc}",
                        party=party,
                        remedy="pass module-level functions (not lambdas or closures), or "
                        "functools.partial of them with picklable arguments",
                    ) from exc
                finally:
                    child_end.close()
                pipes[party], procs[party] = parent_end, proc
            return _orchestrate(pipes, procs, record, max(STARTUP_TIMEOUT, run.timeout))
        finally:
            _stop_all(pipes, procs)


@dataclass(frozen=True)
class _ChildSpec:
    settings: PartySettings
    identity: pki.Identity
    record: bool


def _orchestrate(
    pipes: dict[str, Connection],
    procs: dict[str, multiprocessing.process.BaseProcess],
    record: list[WireRecord] | None,
    startup: float,
) -> dict[str, Any]:
    addresses = _collect_addresses(pipes, procs, startup)
    for pipe in pipes.values():
        pipe.send(("addresses", addresses))
    results: dict[str, Any] = {}
    failures: list[tuple[str, BaseException, str]] = []
    sent: dict[str, list[WireRecord]] = {}
    waiting = dict(pipes)
    grace_until: float | None = None
    while waiting:
        remaining = None if grace_until is None else max(grace_until - time.monotonic(), 0)
        if remaining == 0:
            break
        by_sentinel = {procs[p].sentinel: p for p in waiting}
        ready = wait([*waiting.values(), *by_sentinel], timeout=remaining)
        for item in ready:
            party = by_sentinel.get(item) if isinstance(item, int) else _party_of(waiting, item)
            if party is None or party not in waiting:
                continue
            outcome = _read_outcome(party, waiting[party], procs[party])
            sent[party] = outcome[3]
            del waiting[party]
            if outcome[0] == "ok":
                results[party] = outcome[1]
            else:
                failures.append((party, outcome[1], outcome[2]))
                # A peer's ChannelError may only echo another party's failure: give
                # the root cause a moment to arrive. Any other error is the root cause.
                root_cause = not isinstance(outcome[1], ChannelError)
                grace_until = (
                    time.monotonic()
                    if root_cause
                    else grace_until or (time.monotonic() + FAILURE_GRACE)
                )
    if record is not None:
        for party in pipes:
            record.extend(sent.get(party, []))
    raise_first_failure(failures)
    return results


def _party_of(waiting: dict[str, Connection], conn: object) -> str | None:
    return next((p for p, c in waiting.items() if c is conn), None)


def _collect_addresses(
    pipes: dict[str, Connection], procs: dict[str, multiprocessing.process.BaseProcess],
    startup: float,
) -> dict[str, str]:
    addresses: dict[str, str] = {}
    deadline = time.monotonic() + startup
    for party, pipe in pipes.items():
        remaining = max(deadline - time.monotonic(), 0)
        message = None
        if wait([pipe, procs[party].sentinel], timeout=remaining):
            try:
                message = pipe.recv() if pipe.poll() else None
            except (EOFError, OSError):
                message = None
        if message is not None and message[0] == "address":
            addresses[party] = message[1]
            continue
        if message is not None:
            raise PartyFailed(party, _revive(message[1], message[2]), message[2])
        procs[party].join(timeout=1)
        raise PartyFailed(party, _not_started(party, procs[party].exitcode, startup), "")
    return addresses


def _not_started(party: str, exitcode: int | None, startup: float) -> PartyCrashed:
    """Why ``party``'s process has no server: it ended (an unguarded script, a crash) or,
    still running, it was still starting when the wait ran out."""
    if exitcode is None:
        return PartyCrashed(
            f"party {party!r}'s process did not start its server within {startup:g} s",
            party=party,
            remedy="the machine may be overloaded: retry, or give the run a longer timeout",
        )
    return PartyCrashed(
        f"party {party!r}'s process did not start its server (exit code {exitcode})",
        party=party,
        remedy="a script that calls run_in_processes must guard its entry point with "
        "'if __name__ == \"__main__\":' (processes are spawned)",
    )


def _read_outcome(
    party: str, pipe: Connection, proc: multiprocessing.process.BaseProcess
) -> tuple[str, Any, str, list[WireRecord]]:
    """("ok", result, "", sent) or ("error", exception, traceback, sent) from a child,
    where ``sent`` is what the party recorded on its wire (if asked to)."""
    try:
        if pipe.poll():
            kind, payload, tb, *rest = pipe.recv()
            sent = list(rest[0] or []) if rest else []
            if kind == "ok":
                return "ok", payload, "", sent
            return "error", _revive(payload, tb), tb, sent
    except (EOFError, OSError):
        pass
    proc.join(timeout=5)
    error = PartyCrashed(
        f"party {party!r}'s process ended without reporting (exit code {proc.exitcode})",
        party=party,
    )
    return "error", error, "", []


def _revive(payload: bytes, tb: str) -> BaseException:
    try:
        error = pickle.loads(payload)
        if isinstance(error, BaseException):
            return error
    except Exception:  # an exception class the parent cannot rebuild
        pass
    return RemoteError(tb.strip().splitlines()[-1] if tb.strip() else "unknown error")


def _stop_all(
    pipes: dict[str, Connection], procs: dict[str, multiprocessing.process.BaseProcess]
) -> None:
    for pipe in pipes.values():
        with contextlib.suppress(OSError, ValueError):
            pipe.send(("exit", None))
    deadline = time.monotonic() + 5.0
    for proc in procs.values():
        proc.join(timeout=max(deadline - time.monotonic(), 0.1))
    for proc in procs.values():
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=3)
        if proc.is_alive():
            proc.kill()
            proc.join()
    for pipe in pipes.values():
        pipe.close()


# -- in the child process ----------------------------------------------------------
def _child_main(fn: Callable[[Session], Any], spec: _ChildSpec, pipe: Connection) -> None:
    from sharedml.mpc.memory import keep_freed_memory
    from sharedml.transport.grpc import GrpcEndpoint

    keep_freed_memory()  # a party's arrays reuse freed heap (see sharedml.mpc.memory)

    endpoint = None
    try:
        endpoint = GrpcEndpoint(spec.identity)
        pipe.send(("address", endpoint.address, ""))
        kind, addresses = pipe.recv()
        if kind != "addresses":
            os._exit(0)
        exit_now, finished = threading.Event(), threading.Event()
        threading.Thread(target=_watch_parent, args=(pipe, exit_now, finished), daemon=True).start()
        outcome = _run_party(fn, spec, endpoint, addresses)
        finished.set()
        pipe.send(outcome)
        exit_now.wait()
    except (EOFError, OSError, KeyboardInterrupt):
        os._exit(1)  # the parent is gone: leave no orphan behind
    except BaseException as exc:
        _send_error(pipe, exc)
    finally:
        if endpoint is not None:
            endpoint.close(grace=0.5)


def _run_party(
    fn: Callable[[Session], Any], spec: _ChildSpec, endpoint: Any, addresses: dict[str, str]
) -> tuple[str, Any, str, list[WireRecord] | None]:
    mine = spec.settings
    channel = endpoint.channel(mine.run.job, list(mine.parties), addresses, mine.run.timeout)
    recorder = RecordingChannel(channel) if spec.record else None
    sent = recorder.log if recorder is not None else None  # filled as the party sends
    try:
        session = mine.session(recorder or channel)
        result = fn(session)
        channel.close()
    except BaseException as exc:
        with contextlib.suppress(ChannelError):
            channel.close()
        return (*_error_message(exc), sent)
    try:
        pickle.dumps(result)
    except Exception as exc:
        return (
            *_error_message(
                SharedMLError(
                    f"party {mine.party!r} returned a result that cannot be sent to the parent: "
                    f"{exc!r}",
                    party=mine.party,
                    remedy="return numpy arrays, numbers, strings or dicts of them",
                )
            ),
            sent,
        )
    return "ok", result, "", sent


def _error_message(exc: BaseException) -> tuple[str, Any, str]:
    tb = "".join(traceback.format_exception(exc))
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)
    except Exception:
        payload = b""
    return "error", payload, tb


def _send_error(pipe: Connection, exc: BaseException) -> None:
    with contextlib.suppress(OSError, ValueError):
        pipe.send(_error_message(exc))


def _watch_parent(pipe: Connection, exit_now: threading.Event, finished: threading.Event) -> None:
    try:
        while True:
            kind, _ = pipe.recv()
            if kind == "exit":
                if not finished.is_set():
                    os._exit(3)  # the run was stopped (another party failed) while this one ran
                exit_now.set()
                return
    except (EOFError, OSError):
        os._exit(1)  # the parent died: do not outlive it

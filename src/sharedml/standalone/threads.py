"""Run one function per party as threads in this process, over in-memory channels.

Every party gets its own :class:`~sharedml.session.Session` over a
:class:`~sharedml.transport.local.LocalChannel`: no TLS, no processes, the
fastest way to run a protocol. Unit tests, notebooks and ``sharedml demo
--embedded`` use it; the same functions run unchanged as separate processes
over gRPC with mutual TLS through
:func:`~sharedml.standalone.processes.run_in_processes`.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from sharedml.errors import ChannelError
from sharedml.standalone.options import (
    PartyFn,
    RunOptions,
    RunSettings,
    party_fn,
    raise_first_failure,
)
from sharedml.transport.local import LocalHub


def run_in_threads(
    fn: PartyFn | Mapping[str, PartyFn],
    parties: Sequence[str],
    **options: Unpack[RunOptions],
) -> dict[str, Any]:
    """Run ``fn`` (or ``fn[party]``) for every party in a thread; return results by party.

    ``options`` are the :class:`~sharedml.standalone.options.RunOptions`. If
    a party raises, the others waiting on it are woken with a ChannelError and
    the first failure is raised as
    :class:`~sharedml.standalone.options.PartyFailed`.
    """
    run = RunSettings(**options)
    hub = LocalHub(parties)
    results: dict[str, Any] = {}
    failures: list[tuple[str, BaseException, str]] = []

    def body(party: str) -> None:
        session = run.for_party(party, parties).session(hub.channel(party, run.job, run.timeout))
        try:
            results[party] = party_fn(fn, party)(session)
        except BaseException as exc:  # reported with the party's name below
            failures.append((party, exc, traceback.format_exc()))
            hub.fail_party(
                party, ChannelError(f"party {party!r} failed: {exc!r}", party=party)
            )

    threads = [threading.Thread(target=body, args=(p,), name=f"party-{p}") for p in parties]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    raise_first_failure(failures)
    return results

"""Run one function per party as threads in this process (embedded mode).

The embedded run mode (ARCHITECTURE.md §6): every party gets its own
:class:`~sharedml.session.Session` over a :class:`LocalChannel`. Tests, the
demo and notebooks use it; the same functions run unchanged as separate
processes through :mod:`sharedml.cluster`.
"""

from __future__ import annotations

import hashlib
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sharedml.errors import ChannelError, SharedMLError
from sharedml.session import DEFAULT_FRAC_BITS, Session
from sharedml.transport.base import Channel
from sharedml.transport.local import LocalHub

PartyFn = Callable[[Session], Any]


class PartyFailed(SharedMLError):
    """A party's function raised; the message carries its name and traceback."""

    def __init__(self, party: str, error: BaseException, tb: str) -> None:
        super().__init__(f"party {party!r} failed: {error!r}\n{tb}", party=party)
        self.error = error


def run_parties(
    fn: PartyFn | Mapping[str, PartyFn],
    parties: Sequence[str],
    *,
    job: str = "job",
    timeout: float = 120.0,
    frac_bits: int = DEFAULT_FRAC_BITS,
    seed: bytes | None = None,
    extras: Mapping[str, Mapping[str, Any]] | None = None,
    wrap: Callable[[Channel], Channel] | None = None,
) -> dict[str, Any]:
    """Run ``fn`` (or ``fn[party]``) for every party in a thread; return results by party.

    ``seed`` makes every party's secret randomness reproducible (tests only);
    ``wrap`` wraps each channel (e.g. in a RecordingChannel). If a party
    raises, the others waiting on it are woken with a ChannelError and the
    first failure is raised as :class:`PartyFailed`.
    """
    hub = LocalHub(parties)
    results: dict[str, Any] = {}
    failures: list[tuple[str, BaseException, str]] = []

    def body(party: str) -> None:
        channel: Channel = hub.channel(party, job, timeout)
        if wrap is not None:
            channel = wrap(channel)
        session = party_session(
            party, parties, channel, frac_bits, party_seed(seed, party), party_extras(extras, party)
        )
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


# -- shared with sharedml.cluster, which runs the same parties as processes ----------
def party_fn(fn: PartyFn | Mapping[str, PartyFn], party: str) -> PartyFn:
    """The function ``party`` runs: ``fn[party]`` for a mapping, else ``fn`` itself."""
    return fn[party] if isinstance(fn, Mapping) else fn


def party_seed(seed: bytes | None, party: str) -> bytes | None:
    """``party``'s own secret seed derived from the run's ``seed`` (None: draw one)."""
    return hashlib.sha256(seed + party.encode()).digest() if seed is not None else None


def party_extras(extras: Mapping[str, Mapping[str, Any]] | None, party: str) -> dict[str, Any]:
    """A copy of the extras wired in for ``party`` (empty when none are)."""
    return dict((extras or {}).get(party, {}))


def party_session(
    party: str,
    parties: Sequence[str],
    channel: Channel,
    frac_bits: int,
    seed: bytes | None,
    extras: dict[str, Any],
) -> Session:
    """``party``'s session over ``channel``; ``seed`` None leaves Session to draw a fresh one."""
    kwargs: dict[str, Any] = {"extras": extras}
    if seed is not None:
        kwargs["seed"] = seed
    return Session(party, tuple(parties), channel, frac_bits=frac_bits, **kwargs)


def raise_first_failure(failures: Sequence[tuple[str, BaseException, str]]) -> None:
    """Raise :class:`PartyFailed` for the root cause among ``(party, error, traceback)``.

    The root cause is the first party that failed for a reason other than a
    peer's failure reaching it (a ChannelError); failing that, the first.
    """
    if failures:
        primary = next((f for f in failures if not isinstance(f[1], ChannelError)), failures[0])
        raise PartyFailed(*primary) from primary[1]

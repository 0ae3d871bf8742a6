"""What both ways of running party functions without a platform share.

:func:`~sharedml.standalone.threads.run_in_threads` and
:func:`~sharedml.standalone.processes.run_in_processes` take the same
arguments — a function per party and the :class:`RunOptions` defined once
here — and fail alike: the first party that failed for a reason of its own
is raised as :class:`PartyFailed`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from sharedml.errors import ChannelError, SharedMLError
from sharedml.session import DEFAULT_FRAC_BITS, Session
from sharedml.transport.base import Channel

PartyFn = Callable[[Session], Any]


class PartyFailed(SharedMLError):
    """A party's function raised; the message carries its name and traceback.

    ``error`` is the root cause; ``after`` the other parties' failures, which
    followed from it (a peer that vanished, a step that timed out waiting)."""

    def __init__(
        self, party: str, error: BaseException, tb: str,
        after: Sequence[tuple[str, BaseException]] = (),
    ) -> None:
        super().__init__(f"party {party!r} failed: {error!r}\n{tb}", party=party)
        self.error = error
        self.after = tuple(after)

    def lines(self) -> list[str]:
        """The root cause on the first line, then one line per failure that followed."""
        first = [f"error: {_said(self.party or '?', self.error)}"]
        return first + [f"  then: {_said(p, e)}" for p, e in self.after]


def _said(party: str, error: BaseException) -> str:
    """One failure in a line: a sharedml error's own message names party and step."""
    if isinstance(error, SharedMLError):
        return str(error).splitlines()[0]
    return f"party {party!r}: {type(error).__name__}: {error}"


class RunOptions(TypedDict, total=False):
    """How a run of party functions is set up: one definition for both run modes,
    :func:`~sharedml.standalone.threads.run_in_threads` and
    :func:`~sharedml.standalone.processes.run_in_processes`.

    Attributes:
        job: the job id the channels tag messages with (default ``"job"``).
        timeout: seconds a receive waits for a peer (default 120).
        frac_bits: every session's fixed-point precision (default
            :data:`~sharedml.session.DEFAULT_FRAC_BITS`).
        seed: makes every party's secret randomness reproducible (tests only;
            default: each party draws its own).
        dealer: the party among ``parties`` that deals correlated randomness
            (:attr:`Session.dealer <sharedml.session.Session.dealer>`; default none).
        wrap: wraps each party's channel (e.g. in a RecordingChannel), in that
            party's thread or process.
    """

    job: str
    timeout: float
    frac_bits: int
    seed: bytes | None
    dealer: str | None
    wrap: Callable[[Channel], Channel] | None


@dataclass(frozen=True)
class RunSettings:
    """:class:`RunOptions` with their defaults filled in."""

    job: str = "job"
    timeout: float = 120.0
    frac_bits: int = DEFAULT_FRAC_BITS
    seed: bytes | None = None
    dealer: str | None = None
    wrap: Callable[[Channel], Channel] | None = None

    def for_party(self, party: str, parties: Sequence[str]) -> PartySettings:
        """What ``party`` alone is given: the run's settings with its own seed, derived
        from the run's (so a process never holds another party's)."""
        seed = None if self.seed is None else hashlib.sha256(self.seed + party.encode()).digest()
        return PartySettings(party, tuple(parties), replace(self, seed=seed))


@dataclass(frozen=True)
class PartySettings:
    """One party's share of a run: its name, the run's parties, its settings."""

    party: str
    parties: tuple[str, ...]
    run: RunSettings

    def session(self, channel: Channel) -> Session:
        """This party's session over ``channel``, wrapped as asked (no seed: Session draws one)."""
        run = self.run
        if run.wrap is not None:
            channel = run.wrap(channel)
        kwargs: dict[str, Any] = {}
        if run.seed is not None:
            kwargs["seed"] = run.seed
        return Session(self.party, self.parties, channel, frac_bits=run.frac_bits,
                       dealer=run.dealer, **kwargs)


def party_fn(fn: PartyFn | Mapping[str, PartyFn], party: str) -> PartyFn:
    """The function ``party`` runs: ``fn[party]`` for a mapping, else ``fn`` itself."""
    return fn[party] if isinstance(fn, Mapping) else fn


def raise_first_failure(failures: Sequence[tuple[str, BaseException, str]]) -> None:
    """Raise :class:`PartyFailed` for the root cause among ``(party, error, traceback)``.

    The root cause is the first party that failed for a reason other than a
    peer's failure reaching it (a ChannelError); failing that, the first.
    """
    if failures:
        primary = next((f for f in failures if not isinstance(f[1], ChannelError)), failures[0])
        after = [(p, e) for p, e, _ in failures if e is not primary[1]]
        raise PartyFailed(*primary, after=after) from primary[1]

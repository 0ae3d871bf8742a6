"""The dealer of a job: whether a job needs one, and how it serves a step.

The dealer is the job's *helper party*: it holds no data. Besides dealing, it
is the aggregator of the job's horizontal steps (:func:`helper_step`: a step
whose component :meth:`~sharedml.components.base.Component.aggregates` runs
its ``aggregate`` side there first; :mod:`sharedml.components.horizontal`).

One place for both ways a job runs: ``sharedml run`` (:mod:`sharedml.standalone.job`,
a dealer process next to the parties) and the platform (a dealer node, given
one dealer task per step it takes part in, :func:`takes_part`, by
:mod:`sharedml.platform.job_plan` and run by :mod:`sharedml.node.agent`).

A job needs a dealer when a step computes on secret shares with dealt
randomness (``protocol: ss``, unless ``provider: he``). The dealer then serves
the steps it takes part in (:func:`takes_part`), under ``sharedml run`` and
on the platform:

1. The step's data parties run it; each MPC runtime the step opens (one per
   ``fit``, one per shared prediction, none for a data step) asks the dealer
   for correlated randomness (:class:`~sharedml.mpc.DealerProvider`), and the
   dealer serves it with one :func:`~sharedml.mpc.serve_dealer` call.
2. After the step, the last data party (the one the providers talk to) sends
   the end-of-step marker (:func:`end_step_at_dealer`): a STOP request with a
   reserved counter, under the tag the runtimes' requests use, so it arrives
   after their STOPs.
3. The dealer sees the marker and ends its part of the step, reporting public
   counts only (runtimes served, requests).

Reveals: to the dealer, nothing but the randomness it made itself and the
shapes and number of the requests (public: they follow from the job spec and
the data sizes); to the parties, the dealer's counts. Security model:
semi-honest; the dealer must not collude with a data party (it knows every
party's masks). Reference: Beaver, "Efficient multiparty protocols using
circuit randomization", CRYPTO 1991 (the trusted-dealer model).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sharedml.components import jobspec, registry
from sharedml.components.base import DEALER, Params, PartyConfig, StepContext, deals
from sharedml.session import Session
from sharedml.transport.base import Channel
from sharedml.transport.codec import Value

#: Channel scope (under each step's) where :class:`~sharedml.mpc.DealerProvider` talks.
DEALER_SCOPE = "dealer"
#: Counter of the end-of-step STOP to the dealer (runtimes count from 1, STOP is 0).
STEP_END = 2**63 - 1


def needs_dealer(spec: jobspec.JobSpec) -> bool:
    """Whether the job needs its helper party: a step computes on secret shares
    with dealt randomness (:func:`~sharedml.components.base.deals`: ``protocol``
    ``ss`` or ``split`` and ``provider`` not ``he``; a horizontal ``train``
    never deals) or is aggregated (a horizontal step: its component's
    :meth:`~sharedml.components.base.Component.aggregates`)."""
    return any(deals(s.params) or registry.get(s.component).aggregates(s.params)
               for s in spec.parsed_steps())


def takes_part(step: jobspec.StepSpec) -> bool:
    """Whether the job's helper runs ``step``: its component's
    :meth:`~sharedml.components.base.Component.roles` include the dealer (it
    opens dealt MPC runtimes, or the helper aggregates it). The platform gives
    the dealer node a task for these steps only."""
    return DEALER in registry.get(step.component).roles(step.params)


def helper_role(spec: jobspec.JobSpec) -> str:
    """What ``sharedml run`` names the helper: ``dealer`` if any step deals, else
    ``aggregator`` (the platform's helper is its dealer node, whatever it does)."""
    return "dealer" if any(deals(s.params) for s in spec.parsed_steps()) else "aggregator"


def dealer_name(parties: Iterable[str], preferred: str = "dealer") -> str:
    """``preferred``, or ``preferred2``, ``preferred3``...: the first no data party bears."""
    taken = set(parties)
    name, n = preferred, 1
    while name in taken:
        n += 1
        name = f"{preferred}{n}"
    return name


def end_step_at_dealer(session: Session, step_id: str, dealer: str) -> None:
    """Tell the dealer that ``step_id`` opens no further runtime.

    Sent by the last data party (the one a DealerProvider talks to), after the
    step, on the job's (unscoped) channel, under the tag its runtimes' requests
    use, so it arrives after their STOPs. It carries no data: a STOP request
    with a reserved counter.
    """
    from sharedml.mpc.material import Kind, Request

    marker = Request(Kind.STOP, STEP_END, ()).encode()
    session.channel.scope(step_id).scope(DEALER_SCOPE).send(dealer, "req", marker)


class StepEndWatch(Channel):
    """The dealer's channel, noting the end-of-step marker as it passes."""

    def __init__(self, inner: Channel) -> None:
        super().__init__(inner.party, inner.peers, inner.job, inner.timeout)
        self._inner = inner
        self.ended = False

    def _send(self, to: str, tag: str, value: Value) -> None:
        self._inner._send(to, tag, value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        value = self._inner._recv(frm, tag, timeout)
        if tag.endswith(f"/{DEALER_SCOPE}/req"):
            words = np.asarray(value)
            if words.dtype == np.uint64 and words.size > 1 and int(words[1]) == STEP_END:
                self.ended = True
        return value


def serve_step(session: Session, step_id: str, data_parties: Sequence[str]) -> dict[str, Any]:
    """Serve every MPC runtime of one step until its end-of-step marker; return counts.

    ``session.channel`` is the job's channel, not yet scoped to the step (the
    data parties' :func:`~sharedml.components.execute` scopes theirs by step id).
    Returns ``{"runtimes", "requests", "seconds"}``: public counts only.
    """
    from sharedml.mpc import serve_dealer

    start = time.perf_counter()
    watch = StepEndWatch(session.channel)
    scoped = replace(session, channel=watch.scope(step_id))
    runtimes = requests = 0
    while True:
        stats = serve_dealer(scoped, list(data_parties))
        if watch.ended:
            break
        runtimes += 1
        requests += stats.requests
    return {"runtimes": runtimes, "requests": requests,
            "seconds": round(time.perf_counter() - start, 4)}


def helper_step(
    session: Session,
    step_id: str,
    component: str,
    params: Params,
    parties: dict[str, PartyConfig],
    out_dir: Path,
) -> dict[str, Any]:
    """The helper's whole part of one step: aggregate it if its component
    :meth:`~sharedml.components.base.Component.aggregates`, then serve its MPC
    runtimes until the end-of-step marker (:func:`serve_step`).

    ``session`` is the job's (unscoped) channel, ``parties`` the data parties'
    configurations. Returns ``{"metrics", "artifacts", "seconds"}``: the
    aggregator's public figures and the dealer's counts.
    """
    start = time.perf_counter()
    step = registry.get(component)()
    metrics: dict[str, Any] = {}
    artifacts: dict[str, str] = {}
    if step.aggregates(params):
        scoped = replace(session, channel=session.channel.scope(step_id))
        ctx = StepContext(scoped, PartyConfig(session.party), parties, {}, out_dir, step_id)
        result = step.aggregate(ctx, params)
        metrics, artifacts = dict(result.metrics), dict(result.artifacts)
    counts = serve_step(session, step_id, list(parties))
    if counts["runtimes"]:
        metrics.update(runtimes=counts["runtimes"], requests=counts["requests"])
    return {"metrics": metrics, "artifacts": artifacts,
            "seconds": round(time.perf_counter() - start, 4)}

"""Decomposition: from a job spec to the steps the scheduler runs.

A job's spec names parties and steps (a DAG through ``needs``). Each step
becomes a :class:`StepPlan`: the parties that run it together (they talk to
each other during the step), the steps it waits for, and — for a job with a
secret-shared step — the dealer node that serves it. A **task** is one
party's (or the dealer's) share of one planned step; the job lifecycle
(:mod:`sharedml.platform.job_lifecycle`) makes and moves them.

**The dealer.** A job with a secret-shared step (``protocol: ss``, unless
``provider: he``; :func:`sharedml.components.dealer.needs_dealer`, the decision
``sharedml run`` makes too) gets one more task for each step the dealer takes
part in (:func:`sharedml.components.dealer.takes_part`: the step's roles name
the dealer): a *dealer task*, given to the deployment's dealer node and listed
among the step's peers, so the data nodes' channels reach it. A step it takes
no part in (``psi``, ``split``, a ``he`` step) has no dealer task and no
dealer among its peers. The dealer must not collude with a data party, so it
is never one: a job naming the dealer node as a party is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sharedml.components import jobspec
from sharedml.components.dealer import needs_dealer, takes_part
from sharedml.errors import ConfigError


@dataclass(frozen=True)
class StepPlan:
    """One step of a job, decomposed: who runs it and what it waits for."""

    id: str
    component: str
    params: dict[str, Any]
    needs: tuple[str, ...]
    ancestors: tuple[str, ...]
    parties: tuple[str, ...]
    touches_data: bool
    #: The dealer node serving this step (a step whose roles include the dealer), else ``None``.
    dealer: str | None = None

    @property
    def peers(self) -> tuple[str, ...]:
        """Everyone in the step's channel: its data parties, then its dealer."""
        return self.parties + ((self.dealer,) if self.dealer else ())


def decompose(spec: jobspec.JobSpec, dealer: str = "dealer") -> list[StepPlan]:
    """The job's steps in order, each with its parties and transitive needs.

    In a job that :func:`needs_dealer`, each step the dealer takes part in
    (:func:`takes_part`) is served by the dealer node ``dealer``, which may not
    be a data party of the job.
    """
    plans: list[StepPlan] = []
    ancestors: dict[str, set[str]] = {}
    parties = tuple(spec.parties)
    touches = any(p.dataset for p in spec.parties.values())
    served_by = dealer if needs_dealer(spec) else None
    if served_by is not None and served_by in parties:
        raise ConfigError(
            f"invalid job spec field parties.{served_by}: the job computes on secret shares "
            f"and {served_by!r} is the dealer node, which must not be a data party",
            remedy="rename the party, or run the step with 'protocol: he' or 'provider: he'",
        )
    for step in spec.parsed_steps():
        anc = set(step.needs)
        for need in step.needs:
            anc |= ancestors[need]
        ancestors[step.id] = anc
        plans.append(
            StepPlan(
                id=step.id,
                component=step.component,
                params=step.params.model_dump(mode="json"),
                needs=tuple(step.needs),
                ancestors=tuple(sorted(anc)),
                parties=parties,
                touches_data=touches,
                dealer=served_by if takes_part(step) else None,
            )
        )
    return plans

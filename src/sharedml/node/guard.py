"""The node's gate: what a task order must prove before the node runs it.

The platform chooses which tasks a node runs, but it is not trusted with the
party's data: a task order is checked here, in the node's own process, before a
component is built or a dataset opened (8.3-1; :mod:`sharedml.approvals`,
step 4).

1. The order carries the job's spec; its step (component and parameters) and
   its parties are the spec's, and its peers are the spec's parties and the
   dealer. A platform that rewrites a step, adds a party or sends data to a
   peer the spec does not name is refused.
2. The dealer is not a data party (a dealer that is also a party would see
   both halves of every dealt secret).
3. If the spec gives this party a dataset: an approval of this job and of
   this spec's hash for that dataset, signed by one of the approver keys in
   the node's config.

Every refusal is a :class:`~sharedml.errors.PolicyDenied` naming the party, the
step and the remedy; the node reports it as the task's failure and keeps
serving.
"""

from __future__ import annotations

from typing import Any

from sharedml.approvals import ApproverKeys, check_order
from sharedml.components import jobspec
from sharedml.control import TaskOrder
from sharedml.errors import ConfigError, PolicyDenied


def check_task(order: TaskOrder, party: str, keys: ApproverKeys) -> None:
    """Refuse ``order`` unless the spec it carries backs it (steps 1-3 above)."""
    def refuse(what: str) -> PolicyDenied:
        return PolicyDenied(
            f"task order of job {order.job_id} does not match the job's spec: {what}",
            party=party, step=order.step_id,
            remedy="the platform sent an order its spec does not back; report it to the "
            "platform's operator",
        )

    if order.spec is None:
        raise refuse("the order carries no spec")
    try:
        spec = jobspec.load(order.spec)
    except ConfigError as exc:
        raise refuse(f"the spec does not load: {exc.message}") from None
    step = next((s for s in spec.parsed_steps() if s.id == order.step_id), None)
    if step is None:
        raise refuse(f"the spec has no step {order.step_id!r}")
    if step.component != order.component:
        raise refuse(f"step {order.step_id!r} is {step.component!r}, not {order.component!r}")
    if _plain(step.params.model_dump(mode="json")) != _plain(order.params):
        raise refuse(f"the parameters of step {order.step_id!r} differ from the spec's")
    if _plain(order.parties) != _plain(order.spec.get("parties")):
        raise refuse("its parties differ from the spec's")
    if order.dealer is not None and order.dealer in order.parties:
        raise refuse(f"the dealer {order.dealer!r} is a data party of the job")
    allowed = {*order.parties, *([order.dealer] if order.dealer else [])}
    strangers = sorted(set(order.peers) - allowed)
    if strangers:
        raise refuse(f"peers {strangers} are not parties of the job")
    me = spec.parties.get(party)
    if me is not None and me.dataset is not None:
        check_order(party=party, dataset=me.dataset, job_id=order.job_id, step_id=order.step_id,
                    spec=order.spec, approvals=order.approvals, keys=keys)


def _plain(value: Any) -> Any:
    """Compare as JSON would (tuples and lists alike, key order ignored)."""
    import json

    return json.loads(json.dumps(value, sort_keys=True))

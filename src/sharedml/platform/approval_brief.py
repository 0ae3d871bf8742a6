"""What an owner approves: the steps of a job that touch their dataset, and what each
reveals to whom (issue 14 item 6; 8.3-1, 9.4-3).

The brief is computed from the job's spec alone, so the owner's own tools
(``sharedml approval show``) compute it from the spec they hash and sign, not
from what the platform says. Each step lists the parties and dealer in its
channel and the ``Reveals:`` statement of the component's documentation — the
same text the protocol's docstring commits to (STYLE: every protocol states
what it reveals per role); a component without one says so rather than
claiming nothing is revealed.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from typing import Any

from sharedml.components import jobspec, registry
from sharedml.components.train_params import model_class
from sharedml.errors import SharedMLError
from sharedml.platform.job_plan import decompose

NOT_STATED = "not stated by the component: read its documentation before approving"


def reveals_of(component: str, params: dict[str, Any] | None = None) -> str:
    """The ``Reveals:`` paragraph of a component's class or module docstring; for
    ``train``, the chosen learner's first."""
    try:
        classes = [registry.get(component)]
    except SharedMLError:
        return NOT_STATED
    if component == "train" and params:
        with contextlib.suppress(SharedMLError):  # an unknown learner: the step's text
            classes.insert(0, model_class(str(params.get("model")), str(params.get("protocol")),
                                          params.get("task")))
    for cls in classes:
        module = sys.modules.get(cls.__module__)
        for doc in (inspect.getdoc(cls), inspect.getdoc(module) if module else None):
            text = _paragraph(doc or "", "Reveals:")
            if text:
                return text
    return NOT_STATED


def _paragraph(doc: str, marker: str) -> str:
    start = doc.find(marker)
    if start < 0:
        return ""
    rest = doc[start + len(marker):]
    end = rest.find("\n\n")
    return " ".join((rest if end < 0 else rest[:end]).split())


def brief(spec: dict[str, Any], party: str, dealer: str = "dealer") -> list[dict[str, Any]]:
    """Each step of ``spec`` that runs at ``party`` (so reads or derives from its data):
    its id, component, parameters, who else takes part, and what it reveals."""
    out = []
    for plan in decompose(jobspec.load(spec), dealer):
        if party not in plan.parties:
            continue
        out.append({
            "step": plan.id,
            "component": plan.component,
            "params": plan.params,
            "with_parties": [p for p in plan.parties if p != party],
            "dealer": plan.dealer,
            "reveals": reveals_of(plan.component, plan.params),
        })  # fmt: skip
    return out

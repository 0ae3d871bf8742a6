"""What a job's page shows, gathered through the job endpoints as the caller.

The step DAG comes from the stored spec (each step's ``needs``); a step's
state is its latest attempt's tasks' (failed > running > pending >
succeeded); metrics and charts are the public figures the parties' steps
reported (``GET /api/v1/jobs/{id}/result``) — the evaluate step's coarse
ROC/KS points and decile lift (``learn.metrics.chart_summary``), never rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from sharedml.components import jobspec
from sharedml.errors import ConfigError
from sharedml.platform.api import jobs as job_routes
from sharedml.platform.api import routes_data, routes_registry
from sharedml.platform.auth import Principal
from sharedml.platform.console.mirror import call
from sharedml.platform.job_text import plain_metrics, task_events
from sharedml.platform.store.models import FINAL_STATES

BOX_W, BOX_H, GAP_X, GAP_Y = 150, 44, 40, 18


@dataclass
class Step:
    id: str
    component: str
    needs: list[str]
    state: str = "pending"
    progress: float = 0.0
    depth: int = 0
    row: int = 0

    @property
    def x(self) -> int:
        return 10 + self.depth * (BOX_W + GAP_X)

    @property
    def y(self) -> int:
        return 10 + self.row * (BOX_H + GAP_Y)


@dataclass
class JobView:
    job: Any
    tasks: list[Any]
    steps: list[Step]
    results: dict[str, dict[str, Any]]
    approvals: Any
    models: list[Any]
    charts: list[dict[str, Any]] = field(default_factory=list)
    importances: list[dict[str, Any]] = field(default_factory=list)
    #: The registry's versions this job trained (each party's part fingerprint).
    versions: list[Any] = field(default_factory=list)

    @classmethod
    def load(cls, request: Request, who: Principal, job_id: str) -> JobView:
        job = call(job_routes.get_job, request, who, job_id=job_id)
        tasks = call(job_routes.list_tasks, request, who, job_id=job_id)
        result = call(job_routes.job_result, request, who, job_id=job_id)
        approvals = call(routes_data.job_approval_status, request, who, job_id=job_id)
        models = call(routes_data.list_models, request, who, job_id=job_id)
        spec = request.app.state.platform.jobs.get(who, job_id).spec
        steps = _steps(spec, tasks)
        view = cls(job, tasks, steps, result.steps, approvals, models)
        view.charts = _charts(result.steps)
        view.importances = _importances(result.steps)
        view.versions = [v for v in call(routes_registry.list_versions, request, who)
                         if v.job_id == job_id]
        return view

    @property
    def live(self) -> bool:
        return self.job.state not in FINAL_STATES

    @property
    def width(self) -> int:
        return 20 + (max((s.depth for s in self.steps), default=0) + 1) * (BOX_W + GAP_X)

    @property
    def height(self) -> int:
        return 20 + (max((s.row for s in self.steps), default=0) + 1) * (BOX_H + GAP_Y)

    def edges(self) -> list[tuple[Step, Step]]:
        by_id = {s.id: s for s in self.steps}
        return [(by_id[d], s) for s in self.steps for d in s.needs if d in by_id]

    def scalar_metrics(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(step, party, {metric: value}) for every reported step with plain figures."""
        return [(step_id, party, plain)
                for step_id, parties in self.results.items()
                for party, res in sorted(parties.items())
                if (plain := plain_metrics(res.get("metrics")))]

    def log(self) -> list[tuple[Any, str, str]]:
        """The job's task events, oldest first: (time, task, event)."""
        return task_events([t.model_dump() for t in self.tasks])


def _steps(spec_json: str, tasks: list[Any]) -> list[Step]:
    try:
        parsed = jobspec.load(json.loads(spec_json)).parsed_steps()
    except (ConfigError, ValueError):
        return []
    latest: dict[str, list[Any]] = {}
    for t in tasks:
        group = latest.setdefault(t.step_id, [])
        if group and group[0].attempt < t.attempt:
            group.clear()
        group.append(t)
    steps: list[Step] = []
    rows: dict[int, int] = {}
    depth: dict[str, int] = {}
    for p in parsed:
        d = 1 + max((depth[n] for n in p.needs), default=-1)
        depth[p.id] = d
        step = Step(p.id, p.component, list(p.needs), depth=d, row=rows.get(d, 0))
        rows[d] = step.row + 1
        group = latest.get(p.id, [])
        states = {t.state for t in group}
        step.state = next((s for s in ("failed", "canceled", "running", "pending")
                           if s in states), "succeeded" if group else "pending")
        step.progress = sum(1.0 if t.state == "succeeded" else t.progress for t in group) / max(
            len(group), 1)
        steps.append(step)
    return steps


def _importances(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per train step and party, the splits made on each of the party's own features."""
    out = []
    for step_id, parties in results.items():
        for party, res in sorted(parties.items()):
            splits = (res.get("metrics") or {}).get("feature_splits")
            if isinstance(splits, dict) and splits:
                top = max(int(v) for v in splits.values())
                out.append({"step": step_id, "party": party, "top": top,
                            "rows": [(str(k), int(v)) for k, v in splits.items()]})
    return out


def _charts(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One chart set per evaluate step that reported ``charts`` (at the label holder)."""
    out = []
    for step_id, parties in results.items():
        for party, res in sorted(parties.items()):
            charts = (res.get("metrics") or {}).get("charts")
            if isinstance(charts, dict) and {"tpr", "fpr", "population"} <= set(charts):
                lift = list(zip(charts.get("lift", []), charts.get("positive_rate", []),
                                strict=False))
                out.append({"step": step_id, "party": party, "data": charts, "lift": lift})
    return out

"""``/api/v1/jobs``: submit, list, inspect, cancel; a job's tasks and its public results.

A submitted spec is validated against every component's parameter schema
(a bad field is a 422 whose detail names its path, e.g.
``steps[1].split.test_size``); the caller needs ``use`` on the project and on
every dataset the spec names, and each dataset's owner is then asked to
approve this use (8.3-1) — the scheduler runs no task touching a dataset
before every owner has approved. Results are the metrics each party's step
reported: public figures, never rows.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import yaml
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from sharedml.components import jobspec
from sharedml.errors import ConfigError
from sharedml.platform.api.deps import get_platform, require
from sharedml.platform.auth import Principal
from sharedml.platform.scheduler import Scheduler
from sharedml.platform.service import Platform
from sharedml.platform.store.models import STATES, Job, Task

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

JOB_ID = Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The job spec: a mapping, or YAML/JSON text.
    spec: dict[str, Any] | str
    project_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    #: Attempts per step; a failed step is retried on all parties.
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    #: A task whose node sends no heartbeat for this long fails.
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 86400)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class JobOut(Out):
    id: str
    name: str
    scheme: str
    state: str
    reason: str | None
    progress: float
    project_id: int | None
    created_by: int | None
    attempts: int
    max_attempts: int
    timeout_s: float | None
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class TaskOut(Out):
    id: str
    job_id: str
    party: str
    step_id: str
    component: str
    state: str
    attempt: int
    reason: str | None
    progress: float
    node_id: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime | None


class ResultOut(BaseModel):
    job_id: str
    state: str
    #: step id -> party -> {"metrics": {...}, "seconds": ...}
    steps: dict[str, dict[str, Any]]


def get_scheduler(request: Request, platform: Platform = Depends(get_platform)) -> Scheduler:
    """The process's scheduler (``app.state.scheduler``), made on first use if absent."""
    scheduler = getattr(request.app.state, "scheduler", None)
    if scheduler is None:
        scheduler = request.app.state.scheduler = Scheduler.for_platform(platform)
    return scheduler


def _spec_of(body: JobIn) -> dict[str, Any]:
    if isinstance(body.spec, dict):
        return body.spec
    try:
        raw = jobspec.parse_yaml(body.spec)  # bounded: no aliases, depth and size capped
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"invalid job spec field spec: not YAML or JSON: {jobspec.yaml_problem(exc)}"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            "invalid job spec field spec: must be a mapping with 'parties' and 'steps'"
        )
    return raw


@router.post("", response_model=JobOut, status_code=201)
def submit_job(
    body: JobIn,
    who: Principal = Depends(require("jobs.submit")),
    platform: Platform = Depends(get_platform),
    scheduler: Scheduler = Depends(get_scheduler),
) -> JobOut:
    """Validate and store a job; its datasets' owners are asked to approve it (in the
    same transaction: a job is never stored without its approval requests)."""
    spec = platform.registry.resolve_spec(who, _spec_of(body))  # saved models -> uid + prints
    try:
        spec_json = json.dumps(spec)
    except (TypeError, ValueError):
        raise ConfigError("invalid job spec field spec: not JSON-representable") from None
    from sharedml.components import jobspec

    jobspec.load(spec)  # schema errors first, naming the field
    platform.jobs.check_submit(who, spec_json, body.project_id)
    job_id = scheduler.submit(
        spec,
        created_by=who.user_id,
        max_attempts=body.max_attempts,
        timeout_s=body.timeout_s,
        project_id=body.project_id,
        actor=who.username,
    )
    return JobOut.model_validate(platform.jobs.get(who, job_id))


@router.get("", response_model=list[JobOut])
def list_jobs(
    state: str | None = Query(default=None, pattern="^(" + "|".join(STATES) + ")$"),
    limit: int = Query(default=100, ge=1, le=1000),
    who: Principal = Depends(require("jobs.read")),
    platform: Platform = Depends(get_platform),
) -> list[JobOut]:
    """The jobs the caller may read, newest first."""
    stmt = select(Job).order_by(Job.created_at.desc())
    if state is not None:
        stmt = stmt.where(Job.state == state)
    with platform.store.reading() as s:
        rows = list(s.scalars(stmt).all())
    visible = [j for j in rows if platform.access.can_read_job(who, j)]
    return [JobOut.model_validate(j) for j in visible[:limit]]


@router.get("/{job_id}", response_model=JobOut)
def get_job(
    job_id: str = JOB_ID,
    who: Principal = Depends(require("jobs.read")),
    platform: Platform = Depends(get_platform),
) -> JobOut:
    """A job's state, progress and, when it waits or failed, the reason."""
    return JobOut.model_validate(platform.jobs.get(who, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(
    job_id: str = JOB_ID,
    who: Principal = Depends(require("jobs.cancel")),
    platform: Platform = Depends(get_platform),
    scheduler: Scheduler = Depends(get_scheduler),
) -> JobOut:
    """Cancel a pending or running job (409 if it already finished)."""
    job = platform.jobs.get(who, job_id)
    platform.access.require_job(who, job, "use")
    scheduler.cancel(job_id, by=who.username)
    return JobOut.model_validate(platform.jobs.get(who, job_id))


@router.get("/{job_id}/tasks", response_model=list[TaskOut])
def list_tasks(
    job_id: str = JOB_ID,
    who: Principal = Depends(require("jobs.read")),
    platform: Platform = Depends(get_platform),
) -> list[TaskOut]:
    """Every task of the job, all attempts, in step order."""
    platform.jobs.get(who, job_id)
    with platform.store.reading() as s:
        rows = s.scalars(
            select(Task).where(Task.job_id == job_id).order_by(Task.attempt, Task.created_at)
        ).all()
        return [TaskOut.model_validate(t) for t in rows]


@router.get("/{job_id}/result", response_model=ResultOut)
def job_result(
    job_id: str = JOB_ID,
    who: Principal = Depends(require("jobs.read")),
    platform: Platform = Depends(get_platform),
) -> ResultOut:
    """Each finished step's public metrics per party (partial while the job runs)."""
    job = platform.jobs.get(who, job_id)
    return ResultOut(job_id=job.id, state=job.state, steps=(job.result or {}).get("steps", {}))

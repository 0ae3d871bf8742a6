"""Jobs: the list with filters, the builder, and a job's page with its live part."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import Response

from sharedml.errors import ConfigError
from sharedml.platform.api import jobs as job_routes
from sharedml.platform.api import routes_data
from sharedml.platform.api.schemas import DatasetOut
from sharedml.platform.auth import Principal
from sharedml.platform.console import builder, session
from sharedml.platform.console.job_view import JobView
from sharedml.platform.console.mirror import call
from sharedml.platform.console.routing import Form, field, form_data, make_router
from sharedml.platform.console.web import PREFIX, redirect, render
from sharedml.platform.store.models import STATES

router = make_router()
PAGE = 100


@router.get("/jobs")
def jobs(
    request: Request,
    state: str = "",
    q: str = "",
    who: Principal = Depends(session.principal),
) -> Response:
    """The caller's visible jobs, newest first, by state and name (``GET /api/v1/jobs``)."""
    wanted = state if state in STATES else None
    rows = call(job_routes.list_jobs, request, who, state=wanted, limit=1000)
    text = q.strip().lower()[:128]
    shown = [j for j in rows if text in j.name.lower() or text in j.id] if text else rows
    return render(request, "jobs.html", jobs=shown[:PAGE], total=len(shown), states=STATES,
                  state=wanted or "", q=q[:128])


@router.get("/jobs/new")
def new_job(request: Request, template: str = "", who: Principal = Depends(session.principal)
            ) -> Response:
    draft = builder.Draft()
    datasets = _usable(request, who)
    if template:
        for ds in datasets[:2]:
            draft.parties[ds.owner_party] = {"dataset": ds.name, "label": "", "id": "id"}
        draft.apply_template(template[:32])
    return _builder_page(request, draft, datasets)


@router.post("/jobs/new")
def build(request: Request, form: Form = Depends(form_data),
          who: Principal = Depends(session.principal)) -> Response:
    """Add or remove a step, start from a template, or submit (``POST /api/v1/jobs``)."""
    draft = builder.Draft.from_form(form)
    op = field(form, "op")
    if op == "add" and field(form, "new_step"):
        draft.steps.append((field(form, "new_step")[:64], {}))
    elif op.startswith("remove:") and op[7:].isdigit() and int(op[7:]) < len(draft.steps):
        del draft.steps[int(op[7:])]
    elif op.startswith("template:"):
        draft.apply_template(op[9:])
    elif op == "submit":
        checked = builder.check(draft)
        if checked.error:
            return _builder_page(request, draft, _usable(request, who), status=422)
        body = job_routes.JobIn(spec=checked.spec)
        job = call(job_routes.submit_job, request, who, body=body)
        return redirect(request, f"{PREFIX}/jobs/{job.id}")
    return _builder_page(request, draft, _usable(request, who))


@router.post("/jobs/new/preview")
def preview(request: Request, form: Form = Depends(form_data),
            who: Principal = Depends(session.principal)) -> Response:
    """The YAML the form builds and the first error, re-checked on every change."""
    return render(request, "_preview.html", checked=builder.check(builder.Draft.from_form(form)))


def _usable(request: Request, who: Principal) -> list[DatasetOut]:
    rows: list[DatasetOut] = call(routes_data.list_datasets, request, who)
    return rows


def _builder_page(request: Request, draft: builder.Draft, datasets: list[DatasetOut],
                  status: int = 200) -> Response:
    by_party: dict[str, list[DatasetOut]] = {}
    for ds in datasets:
        by_party.setdefault(ds.owner_party, []).append(ds)
    steps = [(i, c, values, builder.form_rows(c)) for i, (c, values) in enumerate(draft.steps)]
    return render(request, "builder.html", status=status, draft=draft, by_party=by_party,
                  steps=steps, components=builder.components(),
                  templates=sorted(builder.TEMPLATES), checked=builder.check(draft))


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, who: Principal = Depends(session.principal)
             ) -> Response:
    view = JobView.load(request, who, _job_id(job_id))
    return render(request, "job.html", view=view)


@router.get("/jobs/{job_id}/live")
def job_live(request: Request, job_id: str, who: Principal = Depends(session.principal)
             ) -> Response:
    """The part of the job page that moves; htmx polls it until the job ends."""
    view = JobView.load(request, who, _job_id(job_id))
    return render(request, "_job_live.html", view=view)


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str, who: Principal = Depends(session.principal)
           ) -> Response:
    call(job_routes.cancel_job, request, who, job_id=_job_id(job_id))
    return redirect(request, f"{PREFIX}/jobs/{job_id}")


def _job_id(raw: str) -> str:
    if not raw or len(raw) > 32 or any(c not in "0123456789abcdef" for c in raw):
        raise ConfigError(f"{raw[:40]!r} is not a job id", remedy="pick a job from the list")
    return raw

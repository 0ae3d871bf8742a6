"""Home, nodes, datasets (metadata and schema only) and their approval requests."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from sharedml.approvals import SignedApproval, canonical
from sharedml.errors import ConfigError
from sharedml.platform.api import jobs as job_routes
from sharedml.platform.api import routes_admin, routes_data
from sharedml.platform.api.schemas import DecisionIn
from sharedml.platform.auth import Principal
from sharedml.platform.console import session
from sharedml.platform.console.mirror import call
from sharedml.platform.console.routing import Form, field, form_data, make_router
from sharedml.platform.console.web import PREFIX, local, redirect, render

router = make_router()


@router.get("/")
def home(request: Request, who: Principal = Depends(session.principal)) -> Response:
    """What waits for me: approvals I may decide, my failed jobs."""
    pending = call(routes_data.list_approvals, request, who, state="pending")
    datasets = {d.id: d for d in call(routes_data.list_datasets, request, who)}
    mine = [a for a in pending if a.dataset_id in datasets
            and datasets[a.dataset_id].owner_user_id == who.user_id]
    failed = call(job_routes.list_jobs, request, who, state="failed", limit=20)
    return render(request, "home.html", approvals=mine, datasets=datasets, failed=failed)


@router.get("/nodes")
def nodes(request: Request, who: Principal = Depends(session.principal)) -> Response:
    rows = call(routes_admin.list_nodes, request, who)
    return render(request, "nodes.html", nodes=rows)


@router.get("/datasets")
def datasets(request: Request, who: Principal = Depends(session.principal)) -> Response:
    rows = call(routes_data.list_datasets, request, who)
    return render(request, "datasets.html", datasets=rows)


@router.get("/datasets/{dataset_id}")
def dataset(
    request: Request, dataset_id: int, who: Principal = Depends(session.principal)
) -> Response:
    """One dataset's metadata and schema; the approvals of its uses the caller may see."""
    ds = call(routes_data.get_dataset, request, who, dataset_id=dataset_id)
    approvals = [a for a in call(routes_data.list_approvals, request, who)
                 if a.dataset_id == dataset_id]
    return render(request, "dataset.html", ds=ds, approvals=approvals)


@router.get("/approvals")
def approvals(
    request: Request, state: str | None = None, who: Principal = Depends(session.principal)
) -> Response:
    wanted = state if state in ("pending", "approved", "rejected") else None
    rows = call(routes_data.list_approvals, request, who, state=wanted)
    datasets = {d.id: d for d in call(routes_data.list_datasets, request, who)}
    return render(request, "approvals.html", approvals=rows, datasets=datasets, state=wanted)


@router.get("/approvals/{approval_id}/statement")
def statement(
    request: Request, approval_id: int, who: Principal = Depends(session.principal)
) -> Response:
    """``GET /api/v1/approvals/{id}/spec`` for approve.js: the spec in canonical form,
    the bytes the owner's browser hashes and the nodes hash (``approvals.canonical``)."""
    about = call(routes_data.approval_spec, request, who, approval_id=approval_id)
    return JSONResponse({"job_id": about.job_id, "party": about.party, "dataset": about.dataset,
                         "canonical": canonical(about.spec).decode()},
                        headers={"Cache-Control": "no-store"})


@router.post("/approvals/{approval_id}/decision")
def decide(
    request: Request,
    approval_id: int,
    form: Form = Depends(form_data),
    who: Principal = Depends(session.principal),
) -> Response:
    """``POST /api/v1/approvals/{id}/decision``: only the dataset's owner, audited. An
    approval carries the owner's signature, made in the browser (static/approve.js)."""
    approve = field(form, "decision") == "approve"
    body = DecisionIn(approve=approve, comment=field(form, "comment")[:4000],
                      signed=_signed(form, approval_id) if approve else None)
    call(routes_data.decide_approval, request, who, body=body, approval_id=approval_id)
    return redirect(request, field(form, "next") if local(field(form, "next"))
                    else f"{PREFIX}/approvals")


def _signed(form: Form, approval_id: int) -> SignedApproval:
    names = ("job_id", "party", "dataset", "spec_sha256", "signer", "signature")
    try:
        return SignedApproval.model_validate({n: field(form, n) for n in names})
    except ValidationError:
        raise ConfigError(
            f"approval {approval_id} was posted without a valid signature",
            remedy="choose your approval key file before 'Sign and approve' (the page signs "
            "in your browser, with JavaScript), or approve with 'sharedml job approve --key'",
        ) from None

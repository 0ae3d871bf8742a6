"""The audit log (filters, "verify chain"), users, roles and grants, runtime settings."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import Depends, Request
from fastapi.responses import Response

from sharedml.errors import ConfigError
from sharedml.platform.api import routes_admin, routes_data
from sharedml.platform.api.schemas import Role
from sharedml.platform.auth import Principal
from sharedml.platform.console import session
from sharedml.platform.console.mirror import call, endpoint
from sharedml.platform.console.routing import Form, form_data, make_router
from sharedml.platform.console.web import PREFIX, redirect, render
from sharedml.platform.runtime import RuntimeSettings

router = make_router()
LIST_DATASET_GRANTS = endpoint(routes_data.router, "list_dataset_grants")


@router.get("/audit")
def audit(
    request: Request,
    actor: str = "",
    action: str = "",
    after_seq: int = 0,
    who: Principal = Depends(session.principal),
) -> Response:
    rows = call(routes_admin.query_audit, request, who, actor=actor[:128] or None,
                action=action[:64] or None, after_seq=max(0, after_seq), limit=200)
    return render(request, "audit.html", rows=rows, actor=actor, action=action,
                  after_seq=after_seq)


@router.get("/audit/verify")
def audit_verify(request: Request, who: Principal = Depends(session.principal)) -> Response:
    """The chain walked end to end (``GET /api/v1/audit/verify``), as an htmx fragment."""
    result = call(routes_admin.verify_audit, request, who)
    return render(request, "_verify.html", v=result)


@router.get("/users")
def users(request: Request, who: Principal = Depends(session.principal)) -> Response:
    """Users and roles; each dataset's and project's grants the caller may read."""
    rows = call(routes_admin.list_users, request, who)
    names = {u.id: u.username for u in rows}
    grants: list[tuple[str, Any]] = []
    for ds in call(routes_data.list_datasets, request, who):
        for g in call(LIST_DATASET_GRANTS, request, who, rid=ds.id,
                      path_params={"dataset_id": ds.id}):
            grants.append((f"dataset {ds.owner_party}/{ds.name}", g))
    return render(request, "users.html", users=rows, grants=grants, names=names,
                  roles=list(get_args(Role)))


@router.get("/settings")
def settings(request: Request, who: Principal = Depends(session.principal)) -> Response:
    current = call(routes_admin.get_settings, request, who)
    return render(request, "settings.html", current=current,
                  fields=RuntimeSettings.model_fields, message="")


@router.post("/settings")
def change_settings(
    request: Request, form: Form = Depends(form_data), who: Principal = Depends(session.principal)
) -> Response:
    """``PATCH /api/v1/settings`` with the fields that changed; in force at once, audited."""
    current = call(routes_admin.get_settings, request, who).model_dump()
    changes: dict[str, Any] = {}
    for name, info in RuntimeSettings.model_fields.items():
        if info.annotation is bool:
            value: Any = name in form
        elif name in form:
            value = form[name][0]
        else:
            continue
        if str(value) != str(current[name]):
            changes[name] = value
    if changes:
        try:
            call(routes_admin.update_settings, request, who, changes=changes)
        except ConfigError as exc:
            return render(request, "settings.html", status=422, current=current,
                          fields=RuntimeSettings.model_fields, message=exc.message)
    return redirect(request, f"{PREFIX}/settings")

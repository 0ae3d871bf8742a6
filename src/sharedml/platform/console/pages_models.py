"""Model versions and their aliases (issue 12's registry, ``/api/v1/registry``).

Metadata only, as the registry keeps it: name, version, uid, training job, spec
hash, parties, each party's part fingerprint (the part stays at that party's
node), public metrics, aliases. The forms move an alias (``PUT
.../aliases/{alias}``: the training job's author or an admin) and record a data
owner's consent to delete (``POST .../delete-consent``).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response

from sharedml.platform.api import routes_registry
from sharedml.platform.auth import Principal
from sharedml.platform.console import session
from sharedml.platform.console.mirror import call
from sharedml.platform.console.routing import Form, field, form_data, make_router
from sharedml.platform.console.web import PREFIX, redirect, render
from sharedml.platform.job_text import plain_metrics

router = make_router()


@router.get("/models")
def models(request: Request, name: str = "", who: Principal = Depends(session.principal)
           ) -> Response:
    """Every version the caller may read, newest first within each name."""
    rows = call(routes_registry.list_versions, request, who, name=name[:128] or None)
    by_name: dict[str, list[Any]] = {}
    for v in sorted(rows, key=lambda v: (v.name, -v.version)):
        by_name.setdefault(v.name, []).append(v)
    return render(request, "models.html", by_name=by_name, name=name[:128])


@router.get("/models/{ref}")
def model(request: Request, ref: str, who: Principal = Depends(session.principal)) -> Response:
    """One version: its parties' part fingerprints, public metrics, aliases."""
    v = call(routes_registry.get_version, request, who, ref=ref[:200])
    metrics = [(party, plain_metrics(m)) for party, m in sorted((v.metrics or {}).items())
               if isinstance(m, dict)]
    return render(request, "model.html", v=v, metrics=metrics)


@router.post("/models/{ref}/alias")
def tag(request: Request, ref: str, form: Form = Depends(form_data),
        who: Principal = Depends(session.principal)) -> Response:
    """``PUT /api/v1/registry/models/{ref}/aliases/{alias}``, audited as ``model.tag``."""
    v = call(routes_registry.tag_version, request, who, ref=ref[:200],
             alias=field(form, "alias").strip()[:64] or "-")
    return redirect(request, f"{PREFIX}/models/{v.uid}")


@router.post("/models/{ref}/delete-consent")
def consent(request: Request, ref: str, who: Principal = Depends(session.principal)
            ) -> Response:
    """``POST /api/v1/registry/models/{ref}/delete-consent`` for the owner's parties."""
    out = call(routes_registry.consent_to_delete, request, who, ref=ref[:200])
    return redirect(request, f"{PREFIX}/models" if out.deleted else f"{PREFIX}/models/{out.uid}")

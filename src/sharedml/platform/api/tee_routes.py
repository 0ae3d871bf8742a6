"""``/api/v1/tee``: the platform's face of TEE jobs (:mod:`sharedml.platform.tee_jobs`).

A ``scheme: tee`` job is submitted like any job (``POST /api/v1/jobs``); these
routes add what its providers need and what the operator manages:

* ``POST /enclaves`` — register a fixed enclave endpoint at run time (its
  address; the TLS certificate it presents, if given, must be the one it
  serves); the platform attests it now and stores it as an enclave node
  (``nodes.manage``). Enclave node agents (``role: enclave``) and the ``tee:``
  section of the platform's config need no call;
The job routes answer the job's readers (its author, admins, auditors, its
project) and the users of the job's parties — its providers, who upload and
fetch their releases with their own accounts.

* ``GET /jobs/{id}`` — where a provider uploads: the enclave's address and
  certificate, which the provider pins and then attests with its own policy;
* ``GET /jobs/{id}/receipt`` — the enclave's signed destruction receipt,
  which a provider verifies against the key bundle it attested;
* ``GET /jobs/{id}/released/{what}/{step}`` — a model or scores sealed to the
  caller's party (only the party it was released to may fetch it; the
  platform cannot open it).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from sharedml.errors import PolicyDenied
from sharedml.platform.api.deps import get_platform, require
from sharedml.platform.auth import Principal
from sharedml.platform.errors import NotFound
from sharedml.platform.records import get_or_404
from sharedml.platform.service import Platform
from sharedml.platform.store.models import Job
from sharedml.platform.tee_jobs import TeeJobs

router = APIRouter(prefix="/api/v1/tee", tags=["tee"])
JOB_ID = Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")


class EnclaveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    address: str = Field(min_length=3, max_length=255)
    certificate: str | None = Field(None, min_length=1, max_length=16384,
                                    description="PEM the enclave presents (checked if given)")


def readable(who: Principal, platform: Platform, job_id: str) -> None:
    """The job's readers, and users acting for one of its parties (its providers)."""
    with platform.store.reading() as s:
        job = get_or_404(s, Job, job_id, "job")
    if platform.access.can_read_job(who, job):
        return
    if who.party is not None and who.party in json.loads(job.spec).get("parties", {}):
        return
    raise PolicyDenied(f"{who.username!r} may not read job {job_id}",
                       remedy="only its readers and the users of its parties may")


def get_tee(request: Request) -> TeeJobs:
    tee = getattr(getattr(request.app.state, "scheduler", None), "tee", None)
    if tee is None:
        raise NotFound("this platform runs no TEE jobs",
                       remedy="start it with --config FILE whose 'tee:' section sets the policy")
    return tee


@router.post("/enclaves")
def add_enclave(body: EnclaveIn, who: Principal = Depends(require("nodes.manage")),
                tee: TeeJobs = Depends(get_tee)) -> dict[str, Any]:
    """Attest and register an enclave node."""
    node = tee.add_enclave(body.name, body.address,
                           body.certificate.encode() if body.certificate is not None else None)
    return {"name": node.name, "address": node.address, "measurement": node.measurement}


@router.get("/jobs/{job_id}")
def where(job_id: str = JOB_ID, who: Principal = Depends(require("jobs.read")),
          platform: Platform = Depends(get_platform), tee: TeeJobs = Depends(get_tee)) -> dict[str, Any]:
    """The enclave a provider uploads to, and the job's stage."""
    readable(who, platform, job_id)
    return tee.where(job_id)


@router.get("/jobs/{job_id}/receipt")
def receipt(job_id: str = JOB_ID, who: Principal = Depends(require("jobs.read")),
            platform: Platform = Depends(get_platform), tee: TeeJobs = Depends(get_tee)) -> dict[str, Any]:
    """The job's signed destruction receipt."""
    readable(who, platform, job_id)
    return tee.receipt(job_id)


@router.get("/jobs/{job_id}/released/{what}/{step}")
def released(job_id: str = JOB_ID, what: str = Path(pattern="^(model|scores)$"),
             step: str = Path(min_length=1, max_length=64), who: Principal = Depends(require("jobs.read")),
             platform: Platform = Depends(get_platform), tee: TeeJobs = Depends(get_tee)) -> Response:
    """A release sealed to the caller's party."""
    readable(who, platform, job_id)
    if who.party is None:
        raise PolicyDenied("releases go to a party; this user acts for none", step="released")
    return Response(tee.released(job_id, who.party, what, step), media_type="application/octet-stream")

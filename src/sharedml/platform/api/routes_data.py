"""``/api/v1``: projects, grants, dataset metadata, approvals, models."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from sharedml.platform.access import OPERATIONS, level
from sharedml.platform.api.deps import get_platform, require, require_resource
from sharedml.platform.api.schemas import (
    ApprovalOut,
    ApprovalSpecOut,
    ApprovalStatus,
    DatasetIn,
    DatasetOut,
    DecisionIn,
    GrantIn,
    GrantOut,
    ModelIn,
    ModelOut,
    ProjectIn,
    ProjectOut,
)
from sharedml.platform.approval_brief import brief
from sharedml.platform.auth import Principal
from sharedml.platform.service import Platform

router = APIRouter(prefix="/api/v1")


def ID() -> Any:  # a fresh Path() per parameter: FastAPI must not share one FieldInfo
    return Path(ge=1, le=2**31 - 1)


def JOB_ID() -> Any:
    return Path(min_length=1, max_length=32)


# --- projects --------------------------------------------------------------------


@router.post("/projects", response_model=ProjectOut, status_code=201, tags=["projects"])
def create_project(
    body: ProjectIn,
    who: Principal = Depends(require("projects.create")),
    platform: Platform = Depends(get_platform),
) -> ProjectOut:
    return ProjectOut.model_validate(platform.projects.create(who, body.name, body.description))


@router.get("/projects", response_model=list[ProjectOut], tags=["projects"])
def list_projects(
    who: Principal = Depends(require("projects.read")), platform: Platform = Depends(get_platform)
) -> list[ProjectOut]:
    return [ProjectOut.model_validate(p) for p in platform.projects.list(who)]


@router.get("/projects/{project_id}", response_model=ProjectOut, tags=["projects"])
def get_project(
    project_id: int = ID(),
    _: Principal = Depends(require_resource("projects.read", "project", "read", "project_id")),
    platform: Platform = Depends(get_platform),
) -> ProjectOut:
    return ProjectOut.model_validate(platform.projects.get(project_id))


# --- grants (projects and datasets alike) ------------------------------------------


def _grant_routes(resource: Literal["project", "dataset"], param: str) -> None:
    base = f"/{resource}s/{{{param}}}/grants"
    manage = require_resource("grants.manage", resource, "manage", param)
    read = require_resource(f"{resource}s.read", resource, "read", param)

    @router.get(
        base, response_model=list[GrantOut], tags=["permissions"], name=f"list_{resource}_grants"
    )
    def list_grants(
        rid: int = Path(alias=param, ge=1, le=2**31 - 1),
        who: Principal = Depends(read),
        platform: Platform = Depends(get_platform),
    ) -> list[GrantOut]:
        """The grants on this resource; the grantees' names to who may see them (``GrantOut``)."""
        grants = [GrantOut.model_validate(g) for g in platform.grants.list(resource, rid)]
        if who.role in OPERATIONS["users.read"] or (
            platform.access.grant_level(who, resource, rid) >= level("manage")
        ):
            names = platform.grants.grantee_names(resource, rid)
            for g in grants:
                g.username = names.get(g.user_id)
        return grants

    @router.put(base, response_model=GrantOut, tags=["permissions"], name=f"set_{resource}_grant")
    def set_grant(
        body: GrantIn,
        rid: int = Path(alias=param, ge=1, le=2**31 - 1),
        who: Principal = Depends(manage),
        platform: Platform = Depends(get_platform),
    ) -> GrantOut:
        """Give a user ``read``, ``use`` or ``manage`` on this resource (replaces an earlier grant)."""
        row = platform.grants.set(who, body.user_id, resource, rid, body.permission)
        return GrantOut.model_validate(row)

    @router.delete(
        base + "/{user_id}", status_code=204, tags=["permissions"], name=f"revoke_{resource}_grant"
    )
    def revoke_grant(
        rid: int = Path(alias=param, ge=1, le=2**31 - 1),
        user_id: int = ID(),
        who: Principal = Depends(manage),
        platform: Platform = Depends(get_platform),
    ) -> None:
        platform.grants.revoke(who, resource, rid, user_id)


_grant_routes("project", "project_id")
_grant_routes("dataset", "dataset_id")


# --- datasets ----------------------------------------------------------------------


@router.post("/datasets", response_model=DatasetOut, status_code=201, tags=["datasets"])
def register_dataset(
    body: DatasetIn,
    who: Principal = Depends(require("datasets.register")),
    platform: Platform = Depends(get_platform),
) -> DatasetOut:
    """Register a dataset's metadata (name, columns, size; never rows); the caller owns it.

    Only members of ``owner_party`` (its data owners and admins) may; a record the
    party's node reported is adopted with the node's columns and rows."""
    if body.project_id is not None:
        platform.access.require(who, "project", body.project_id, "use")
    ds = platform.datasets.register(
        who,
        owner_party=body.owner_party,
        name=body.name,
        columns=[c.model_dump() for c in body.columns],
        row_count=body.row_count,
        project_id=body.project_id,
        description=body.description,
    )
    return DatasetOut.model_validate(ds)


@router.get("/datasets", response_model=list[DatasetOut], tags=["datasets"])
def list_datasets(
    who: Principal = Depends(require("datasets.read")), platform: Platform = Depends(get_platform)
) -> list[DatasetOut]:
    return [DatasetOut.model_validate(d) for d in platform.datasets.list(who)]


@router.get("/datasets/{dataset_id}", response_model=DatasetOut, tags=["datasets"])
def get_dataset(
    dataset_id: int = ID(),
    _: Principal = Depends(require_resource("datasets.read", "dataset", "read", "dataset_id")),
    platform: Platform = Depends(get_platform),
) -> DatasetOut:
    return DatasetOut.model_validate(platform.datasets.get(dataset_id))


@router.delete("/datasets/{dataset_id}", status_code=204, tags=["datasets"])
def delete_dataset(
    dataset_id: int = ID(),
    who: Principal = Depends(
        require_resource("datasets.register", "dataset", "manage", "dataset_id")
    ),
    platform: Platform = Depends(get_platform),
) -> None:
    platform.datasets.delete(who, dataset_id)


# --- approvals ---------------------------------------------------------------------


@router.get("/approvals", response_model=list[ApprovalOut], tags=["approvals"])
def list_approvals(
    job_id: str | None = Query(None, max_length=32),
    state: Literal["pending", "approved", "rejected"] | None = None,
    who: Principal = Depends(require("approvals.read")),
    platform: Platform = Depends(get_platform),
) -> list[ApprovalOut]:
    """Data owners see approvals of their datasets; analysts those of their jobs."""
    rows = platform.approvals.list(who, job_id=job_id, state=state)
    return [ApprovalOut.model_validate(a) for a in rows]


@router.get("/approvals/jobs/{job_id}", response_model=ApprovalStatus, tags=["approvals"])
def job_approval_status(
    job_id: str = JOB_ID(),
    who: Principal = Depends(require("approvals.read")),
    platform: Platform = Depends(get_platform),
) -> ApprovalStatus:
    platform.jobs.get(who, job_id)
    return ApprovalStatus(
        job_id=job_id,
        status=platform.approvals.status(job_id),  # type: ignore[arg-type]
        approvals=[ApprovalOut.model_validate(a) for a in platform.approvals.for_job(job_id)],
    )


@router.post("/approvals/{approval_id}/decision", response_model=ApprovalOut, tags=["approvals"])
def decide_approval(
    body: DecisionIn,
    approval_id: int = ID(),
    who: Principal = Depends(require("approvals.decide")),
    platform: Platform = Depends(get_platform),
) -> ApprovalOut:
    """The dataset's owner approves or rejects one job's use of it (8.3-1).

    An approval the nodes honour carries ``signed``: the owner's signature over the
    job's spec (``GET /approvals/{id}/spec``), made with a key only the owner holds."""
    return ApprovalOut.model_validate(
        platform.approvals.decide(who, approval_id, body.approve, body.comment, body.signed)
    )


@router.get("/approvals/{approval_id}/spec", response_model=ApprovalSpecOut, tags=["approvals"])
def approval_spec(
    approval_id: int = ID(),
    who: Principal = Depends(require("approvals.decide")),
    platform: Platform = Depends(get_platform),
) -> ApprovalSpecOut:
    """The job's spec as stored, for its dataset's owner to read, hash and sign, and the
    steps that touch their dataset with what each reveals to whom (issue 14 item 6)."""
    row, ds, spec = platform.approvals.spec_for(who, approval_id)
    return ApprovalSpecOut(approval_id=row.id, job_id=row.job_id, party=ds.owner_party,
                           dataset=ds.name, spec=spec, steps=brief(spec, ds.owner_party))


# --- models ------------------------------------------------------------------------


@router.post("/models", response_model=ModelOut, status_code=201, tags=["models"])
def register_model(
    body: ModelIn,
    who: Principal = Depends(require("models.register")),
    platform: Platform = Depends(get_platform),
) -> ModelOut:
    row = platform.models.register(
        who.username,
        job_id=body.job_id,
        party=body.party,
        name=body.name,
        path=body.path,
        version=body.version,
        metrics=body.metrics,
    )
    return ModelOut.model_validate(row)


@router.get("/models", response_model=list[ModelOut], tags=["models"])
def list_models(
    job_id: str | None = Query(None, max_length=32),
    who: Principal = Depends(require("models.read")),
    platform: Platform = Depends(get_platform),
) -> list[ModelOut]:
    return [ModelOut.model_validate(m) for m in platform.models.list(who, job_id)]


@router.get("/models/{model_id}", response_model=ModelOut, tags=["models"])
def get_model(
    model_id: int = ID(),
    who: Principal = Depends(require("models.read")),
    platform: Platform = Depends(get_platform),
) -> ModelOut:
    return ModelOut.model_validate(platform.models.get(who, model_id))

"""``/api/v1/registry``: model versions registered by jobs, their aliases, deletion.

Metadata only: names, versions, uids, jobs, spec hashes, parties, each
party's part fingerprint, public metrics. The parts stay at the parties'
nodes (:mod:`sharedml.modelpart`). ``{ref}`` is ``NAME@ALIAS``,
``NAME@VERSION`` or a version uid.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from sharedml.platform.api.deps import get_platform, require
from sharedml.platform.api.schemas import Out
from sharedml.platform.auth import Principal
from sharedml.platform.service import Platform
from sharedml.platform.store.models import ModelVersion

router = APIRouter(prefix="/api/v1/registry", tags=["registry"])


class ModelVersionOut(Out):
    uid: str
    name: str
    version: int
    job_id: str | None
    step: str
    spec_hash: str
    parties: list[str]
    fingerprints: dict[str, str]
    metrics: dict[str, Any] | None
    created_by: str
    created_at: dt.datetime
    delete_consent: list[str]
    aliases: list[str] = Field(default_factory=list)


class DeleteOut(BaseModel):
    uid: str
    deleted: bool
    consent: list[str]
    missing: list[str]


def REF() -> Any:
    return Path(min_length=1, max_length=200)


def _out(platform: Platform, row: ModelVersion) -> ModelVersionOut:
    out = ModelVersionOut.model_validate(row)
    out.aliases = platform.registry.aliases(row.uid)
    return out


@router.get("/models", response_model=list[ModelVersionOut])
def list_versions(
    name: str | None = Query(None, max_length=128),
    who: Principal = Depends(require("registry.read")),
    platform: Platform = Depends(get_platform),
) -> list[ModelVersionOut]:
    """Every version the caller may see (of one name, with ``?name=``)."""
    return [_out(platform, r) for r in platform.registry.versions(who, name)]


@router.get("/models/{ref}", response_model=ModelVersionOut)
def get_version(
    ref: str = REF(),
    who: Principal = Depends(require("registry.read")),
    platform: Platform = Depends(get_platform),
) -> ModelVersionOut:
    return _out(platform, platform.registry.get(who, ref))


@router.put("/models/{ref}/aliases/{alias}", response_model=ModelVersionOut)
def tag_version(
    ref: str = REF(),
    alias: str = Path(min_length=1, max_length=64),
    who: Principal = Depends(require("registry.tag")),
    platform: Platform = Depends(get_platform),
) -> ModelVersionOut:
    """Point ``alias`` at this version (audited, with the version it pointed at before)."""
    return _out(platform, platform.registry.tag(who, ref, alias))


@router.post("/models/{ref}/delete-consent", response_model=DeleteOut)
def consent_to_delete(
    ref: str = REF(),
    who: Principal = Depends(require("registry.delete")),
    platform: Platform = Depends(get_platform),
) -> DeleteOut:
    """The caller consents, for the parties whose training datasets they own; the
    version is deleted when every party has consented."""
    return DeleteOut(**platform.registry.consent_delete(who, ref))

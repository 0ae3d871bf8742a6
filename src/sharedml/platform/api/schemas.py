"""Request and response bodies of the REST API (pydantic; they make the OpenAPI spec).

Bounds on every field keep bad input a 422, never a 500 (8.3-2).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sharedml.approvals import SignedApproval

Role = Literal["admin", "data_owner", "analyst", "auditor"]
Permission = Literal["read", "use", "manage"]
Resource = Literal["project", "dataset"]
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
PARTY = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Text = Field(default="", max_length=4000)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, max_length=16)


class LoginOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    username: str
    role: str


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    #: Days until it expires (default 30; at most the ``token_max_days`` setting).
    expires_days: int | None = Field(default=None, ge=1, le=365)
    #: Operations (``jobs.read``) or areas (``jobs``) it may use; ``*``: all the role may.
    scopes: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=32)


class TokenOut(Out):
    id: int
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked: bool
    scopes: str


class TokenCreated(TokenOut):
    token: str


class UserIn(BaseModel):
    username: str = Field(pattern=NAME)
    password: str = Field(min_length=8, max_length=1024)
    role: Role
    totp: bool = True
    #: The organisation the user acts for; its data owners register, grant and approve
    #: its datasets (none: the operator's own staff).
    party: str | None = Field(default=None, pattern=PARTY)


class UserPatch(BaseModel):
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    unlock: bool = False
    party: str | None = Field(default=None, pattern=PARTY)


class UserRef(Out):
    """A user's id for its name: what a grant needs, shown to who may grant."""

    id: int
    username: str


class UserOut(Out):
    id: int
    username: str
    role: str
    party: str | None = None
    disabled: bool
    totp_enrolled: bool = False
    locked_until: dt.datetime | None
    created_at: dt.datetime
    locale: str | None = None


class MePatch(BaseModel):
    #: The console's language for this user.
    locale: Literal["en", "zh"]


class TotpBegun(BaseModel):
    #: otpauth:// URI for the authenticator app (the console shows it as a QR code).
    totp_uri: str
    #: The same secret in base32, to type in.
    secret: str
    #: Pass back to /auth/totp/confirm with the app's code within 10 minutes.
    ticket: str


class TotpConfirm(BaseModel):
    ticket: str = Field(min_length=1, max_length=512)
    code: str = Field(min_length=6, max_length=16)


class UserCreated(UserOut):
    totp_uri: str | None = None


class TotpOut(BaseModel):
    totp_uri: str


class ProjectIn(BaseModel):
    name: str = Field(pattern=NAME)
    description: str = Text


class ProjectOut(Out):
    id: int
    name: str
    description: str
    created_at: dt.datetime


class GrantIn(BaseModel):
    user_id: int = Field(ge=1, le=2**31 - 1)
    permission: Permission


class GrantOut(Out):
    id: int
    user_id: int
    #: The grantee's name: shown to who manages the resource (its owners, admins) and to
    #: auditors; ``None`` to a reader, who may not learn who else holds a grant's name.
    username: str | None = None
    resource: str
    resource_id: int
    permission: str
    created_at: dt.datetime


class ColumnIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=32)


class DatasetIn(BaseModel):
    owner_party: str = Field(pattern=PARTY)
    name: str = Field(pattern=NAME)
    columns: list[ColumnIn] = Field(default_factory=list, max_length=10000)
    row_count: int | None = Field(default=None, ge=0, le=2**62)
    project_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    description: str = Text


class DatasetOut(Out):
    id: int
    owner_party: str
    owner_user_id: int | None
    project_id: int | None
    name: str
    description: str
    columns: list[dict[str, Any]]
    row_count: int | None
    created_at: dt.datetime
    #: When the party's node last reported it (columns and rows are then the node's).
    node_reported_at: dt.datetime | None = None


class DecisionIn(BaseModel):
    approve: bool
    comment: str = Text
    #: The owner's signature over the job's spec (``sharedml.approvals``), made on the
    #: owner's side; the nodes check it before they read the dataset.
    signed: SignedApproval | None = None


class ApprovalSpecOut(BaseModel):
    """What the owner signs: the job's spec as stored, and which dataset of which party."""

    approval_id: int
    job_id: str
    party: str
    dataset: str
    spec: dict[str, Any]
    #: The steps that run at the party, with who else takes part and what each reveals
    #: (``approval_brief.brief``; an owner's tools recompute it from ``spec``).
    steps: list[dict[str, Any]] = []


class ApprovalOut(Out):
    id: int
    job_id: str
    dataset_id: int
    state: str
    decided_by: int | None
    decided_at: dt.datetime | None
    comment: str
    created_at: dt.datetime
    signer: str | None = None
    spec_sha256: str | None = None


class ApprovalStatus(BaseModel):
    job_id: str
    status: Literal["pending", "approved", "rejected"]
    approvals: list[ApprovalOut]


class ModelIn(BaseModel):
    job_id: str = Field(min_length=1, max_length=32)
    party: str = Field(pattern=PARTY)
    name: str = Field(default="", max_length=128)
    path: str = Field(default="", max_length=1024)
    version: int = Field(default=1, ge=1, le=2**31 - 1)
    metrics: dict[str, float | int | str | None] | None = None


class ModelOut(Out):
    id: int
    job_id: str
    party: str
    name: str
    path: str
    version: int
    metrics: dict[str, Any] | None
    created_at: dt.datetime


class NodeOut(Out):
    id: str
    party: str
    address: str
    cert_fingerprint: str
    status: str
    #: ``party``, ``dealer`` or ``enclave`` (a service enclave for ``scheme: tee`` jobs).
    role: str = "party"
    registered_at: dt.datetime
    last_heartbeat: dt.datetime | None
    #: Version, CPU (percent of a core) and memory (MB) the agent last reported.
    stats: dict[str, Any] | None = None


class AuditOut(Out):
    seq: int
    ts: str
    actor: str
    action: str
    target: str
    outcome: str
    detail: str
    prev_hash: str
    hash: str


class VerifyOut(BaseModel):
    ok: bool
    entries: int
    head: str
    first_bad_seq: int | None
    reason: str


class CheckpointOut(BaseModel):
    """A signed audit checkpoint: entry ``seq`` had hash ``head`` at ``ts``."""

    seq: int
    head: str
    ts: str
    signature: str
    public_key: str
    #: The first entry with a keyed MAC (0: none); signed with the rest.
    mac_from: int = 0


class Problem(BaseModel):
    """Every error response: what went wrong and, where known, what to do."""

    error: str
    detail: str
    remedy: str | None = None

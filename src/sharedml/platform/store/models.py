"""The platform's tables (SQLAlchemy 2, typed ``Mapped[]``).

Metadata only: the platform never stores a provider's rows, labels or shares
(docs/architecture.md §1). Every schema change is an Alembic revision in
``sharedml/platform/migrations/versions`` (add a column here, then a revision
that adds it there; the contract suite checks the two agree).

Times are stored as naive UTC and come back timezone-aware (``UTCDateTime``),
the same on SQLite and PostgreSQL. Job and task ids are strings (uuid4 hex):
they travel to node agents.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: The five states of a job and of a task.
STATES = ("pending", "running", "succeeded", "failed", "canceled")
#: Terminal states: nothing moves out of them.
FINAL_STATES = frozenset({"succeeded", "failed", "canceled"})
ROLES = ("admin", "data_owner", "analyst", "auditor")
APPROVAL_STATES = ("pending", "approved", "rejected")
#: Grant levels, weakest first: ``read`` metadata, ``use`` in a job, ``manage`` grants.
PERMISSIONS = ("read", "use", "manage")


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime stored as naive UTC on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    #: AES-GCM(nonce || ciphertext) of the TOTP secret; key in the data dir.
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    #: Last accepted TOTP time step: a code is accepted once (replay protection).
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime]
    #: The organisation the user acts for; only its data owners (and admins) register,
    #: grant and approve its datasets. ``None``: the operator's own staff.
    party: Mapped[str | None] = mapped_column(String(64), default=None)
    #: The console's language for this user ("en", "zh"); None: the browser's.
    locale: Mapped[str | None] = mapped_column(String(8), default=None)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Space-separated operations or areas the token may use (``*``: all its role may).
    scopes: Mapped[str] = mapped_column(String(512), default="*")


class UserSession(Base):
    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]
    #: Absolute end, whatever the activity; the idle limit is a runtime setting.
    expires_at: Mapped[dt.datetime]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime]


class Grant(Base):
    """A user's permission on one project or one dataset (``resource`` says which)."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("user_id", "resource", "resource_id", name="one_grant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    resource: Mapped[str] = mapped_column(String(16))  # "project" | "dataset"
    resource_id: Mapped[int] = mapped_column(Integer, index=True)
    permission: Mapped[str] = mapped_column(String(16))  # PERMISSIONS
    granted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime]


class Dataset(Base):
    """A provider's dataset as the platform knows it: a name, a schema, a size. Never rows."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner_party", "name", name="party_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_party: Mapped[str] = mapped_column(String(64), index=True)
    owner_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    #: ``[{"name": ..., "type": ...}, ...]``
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    row_count: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[dt.datetime]
    #: When the party's node last reported this dataset (its columns and rows are the
    #: node's); ``None``: only an owner's declaration so far.
    node_reported_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), index=True, default=None
    )
    #: The spec as submitted (JSON text), parsed again by whoever needs it.
    spec: Mapped[str] = mapped_column(Text)
    scheme: Mapped[str] = mapped_column(String(8), default="mpc")
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    timeout_s: Mapped[float | None] = mapped_column(Float, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Task(Base):
    """One party's share of one step of a job."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    party: Mapped[str] = mapped_column(String(64))
    step_id: Mapped[str] = mapped_column(String(128))
    component: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    node_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[dt.datetime]
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Node(Base):
    """A provider's node agent, identified by its certificate (subject = party id)."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    party: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(255), default="")
    cert_fingerprint: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16), default="offline")
    #: "party" (runs its own party's tasks) or "dealer" (deals MPC randomness, holds no data).
    role: Mapped[str] = mapped_column(String(16), default="party")
    registered_at: Mapped[dt.datetime]
    last_heartbeat: Mapped[dt.datetime | None] = mapped_column(default=None)
    #: The agent's last reported version, CPU and memory (``control.NodeStats``).
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Approval(Base):
    """A dataset owner's decision on one job's use of one dataset (8.3-1)."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("job_id", "dataset_id", name="job_dataset"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    decided_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    decided_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime]
    #: The owner's signature over this job's spec (``sharedml.approvals``): which approver
    #: key signed, the signature (base64) and the spec hash it covers. Nodes check it.
    signer: Mapped[str | None] = mapped_column(String(64), default=None)
    signature: Mapped[str | None] = mapped_column(Text, default=None)
    spec_sha256: Mapped[str | None] = mapped_column(String(64), default=None)


class ModelRecord(Base):
    """Where a party keeps its part of a trained model. Metadata only."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    party: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128), default="")
    path: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[dt.datetime]


class ModelVersion(Base):
    """One registered model version (``platform/registry.py``): metadata and each
    party's part fingerprint, never parameters. Immutable once written, but for
    the parties' delete consent."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="name_version"),)

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None, index=True
    )
    step: Mapped[str] = mapped_column(String(128))
    spec_hash: Mapped[str] = mapped_column(String(80))
    parties: Mapped[list[str]] = mapped_column(JSON, default=list)
    fingerprints: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime]
    #: Parties whose owners consented to deleting this version.
    delete_consent: Mapped[list[str]] = mapped_column(JSON, default=list)


class ModelAlias(Base):
    """A movable name (``production``, ``candidate``) for one version of a model."""

    __tablename__ = "model_aliases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    uid: Mapped[str] = mapped_column(ForeignKey("model_versions.uid", ondelete="CASCADE"))
    updated_at: Mapped[dt.datetime]


class AuditEntry(Base):
    """One link of the hash chain. Every hashed field is text, so it survives any backend."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255), default="")
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: HMAC-SHA256 of (seq, hash) under the platform's audit key (``audit_mac.py``);
    #: ``None`` for entries written before revision 0007.
    mac: Mapped[str | None] = mapped_column(String(64), default=None)


class Setting(Base):
    """A runtime setting (8.6-5): JSON value, changed through the API without a restart."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime]
    updated_by: Mapped[str] = mapped_column(String(128), default="")

"""The platform's operations, as the REST API, the CLI and the scheduler use them.

:class:`Platform` bundles one store with its clock, key, audit log, runtime
settings, authenticator and access checks, and exposes one service object per
area. Role and grant checks happen in the API's dependencies before a call
lands here; the services scope listings to what the caller may see, write the
audit log and raise the platform's errors (``platform/errors.py``).

For the scheduler: :meth:`Approvals.request_for_job` creates the pending
approvals a new job needs, :meth:`Approvals.approvals_complete` says whether
every dataset owner has approved (8.3-1; no task touching a dataset runs
before), :meth:`Approvals.status` tells a rejection apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from argon2 import PasswordHasher
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sharedml.errors import ConfigError, PolicyDenied
from sharedml.platform.access import Access, level
from sharedml.platform.audit import AuditLog
from sharedml.platform.auth import Authenticator, Principal
from sharedml.platform.clock import Clock, SystemClock
from sharedml.platform.errors import Conflict, NotFound
from sharedml.platform.keys import SecretBox
from sharedml.platform.runtime import SettingsService, apply_log_level
from sharedml.platform.store import Store, sqlite_url
from sharedml.platform.store.models import (
    PERMISSIONS,
    ROLES,
    Approval,
    Dataset,
    Grant,
    Job,
    ModelRecord,
    Node,
    Project,
    User,
)

T = TypeVar("T")


def _get(s: Any, model: type[T], key: Any, what: str) -> T:
    row = s.get(model, key)
    if row is None:
        raise NotFound(f"{what} {key} does not exist")
    return row


class Users:
    def __init__(self, p: Platform) -> None:
        self._p = p

    def create(
        self, actor: str, username: str, password: str, role: str, *, totp: bool = True
    ) -> tuple[User, str | None]:
        user, uri = self._p.auth.create_user(username, password, role, totp=totp)
        self._p.audit.append(actor, "user.create", username, detail={"role": role, "totp": totp})
        return user, uri

    def list(self) -> list[User]:
        with self._p.store.session() as s:
            return list(s.scalars(select(User).order_by(User.id)).all())

    def get(self, user_id: int) -> User:
        with self._p.store.session() as s:
            return _get(s, User, user_id, "user")

    def by_name(self, username: str) -> User:
        with self._p.store.session() as s:
            user = s.scalars(select(User).where(User.username == username)).first()
        if user is None:
            raise NotFound(f"user {username!r} does not exist")
        return user

    def update(
        self,
        actor: str,
        user_id: int,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
        unlock: bool = False,
    ) -> User:
        if role is not None and role not in ROLES:
            raise ConfigError(f"unknown role {role!r}", remedy=f"use one of {list(ROLES)}")
        changed: dict[str, Any] = {}
        with self._p.store.session() as s:
            user = _get(s, User, user_id, "user")
            if role is not None:
                user.role = changed["role"] = role
            if disabled is not None:
                user.disabled = changed["disabled"] = disabled
            if password is not None:
                user.password_hash = self._p.auth.hash_password(password)
                changed["password"] = "changed"
            if unlock:
                user.locked_until, user.failed_attempts = None, 0
                changed["unlock"] = True
        self._p.audit.append(actor, "user.update", user.username, detail=changed)
        return user

    def reset_totp(self, actor: str, user_id: int) -> str:
        uri = self._p.auth.reset_totp(user_id)
        self._p.audit.append(actor, "user.totp.reset", str(user_id))
        return uri


class Projects:
    def __init__(self, p: Platform) -> None:
        self._p = p

    def create(self, principal: Principal, name: str, description: str = "") -> Project:
        project = Project(
            name=name,
            description=description,
            created_by=principal.user_id,
            created_at=self._p.clock.now(),
        )
        with self._p.store.session() as s:
            if s.scalar(select(Project.id).where(Project.name == name)) is not None:
                raise Conflict(f"project {name!r} already exists")
            s.add(project)
        self._p.audit.append(principal.username, "project.create", name)
        return project

    def list(self, principal: Principal) -> list[Project]:
        stmt = select(Project).order_by(Project.id)
        if principal.role not in ("admin", "auditor"):
            mine = select(Grant.resource_id).where(
                Grant.user_id == principal.user_id, Grant.resource == "project"
            )
            stmt = stmt.where(Project.id.in_(mine))
        with self._p.store.session() as s:
            return list(s.scalars(stmt).all())

    def get(self, project_id: int) -> Project:
        with self._p.store.session() as s:
            return _get(s, Project, project_id, "project")


class Grants:
    def __init__(self, p: Platform) -> None:
        self._p = p

    def set(
        self, principal: Principal, user_id: int, resource: str, resource_id: int, permission: str
    ) -> Grant:
        if permission not in PERMISSIONS:
            raise ConfigError(
                f"unknown permission {permission!r}", remedy=f"use {list(PERMISSIONS)}"
            )
        with self._p.store.session() as s:
            _get(s, User, user_id, "user")
            row = s.scalars(
                select(Grant).where(
                    Grant.user_id == user_id,
                    Grant.resource == resource,
                    Grant.resource_id == resource_id,
                )
            ).first()
            if row is None:
                row = Grant(
                    user_id=user_id,
                    resource=resource,
                    resource_id=resource_id,
                    permission=permission,
                    granted_by=principal.user_id,
                    created_at=self._p.clock.now(),
                )
                s.add(row)
            else:
                row.permission, row.granted_by = permission, principal.user_id
        self._p.audit.append(
            principal.username,
            "grant.set",
            f"{resource}/{resource_id}",
            detail={"user_id": user_id, "permission": permission},
        )
        return row

    def revoke(self, principal: Principal, resource: str, resource_id: int, user_id: int) -> None:
        with self._p.store.session() as s:
            row = s.scalars(
                select(Grant).where(
                    Grant.user_id == user_id,
                    Grant.resource == resource,
                    Grant.resource_id == resource_id,
                )
            ).first()
            if row is None:
                raise NotFound(f"user {user_id} has no grant on {resource} {resource_id}")
            s.delete(row)
        self._p.audit.append(
            principal.username,
            "grant.revoke",
            f"{resource}/{resource_id}",
            detail={"user_id": user_id},
        )

    def list(self, resource: str, resource_id: int) -> list[Grant]:
        with self._p.store.session() as s:
            stmt = select(Grant).where(Grant.resource == resource, Grant.resource_id == resource_id)
            return list(s.scalars(stmt.order_by(Grant.id)).all())


class Datasets:
    def __init__(self, p: Platform) -> None:
        self._p = p

    def register(
        self,
        principal: Principal,
        *,
        owner_party: str,
        name: str,
        columns: list[dict[str, Any]],
        row_count: int | None = None,
        project_id: int | None = None,
        description: str = "",
    ) -> Dataset:
        """Record a dataset's metadata; the caller becomes its owner."""
        ds = Dataset(
            owner_party=owner_party,
            owner_user_id=principal.user_id,
            project_id=project_id,
            name=name,
            description=description,
            columns=columns,
            row_count=row_count,
            created_at=self._p.clock.now(),
        )
        try:
            with self._p.store.session() as s:
                if project_id is not None:
                    _get(s, Project, project_id, "project")
                s.add(ds)
        except IntegrityError:
            raise Conflict(f"party {owner_party!r} already has a dataset {name!r}") from None
        self._p.audit.append(
            principal.username,
            "dataset.register",
            f"{owner_party}/{name}",
            detail={"columns": len(columns), "rows": row_count},
        )
        return ds

    def list(self, principal: Principal) -> list[Dataset]:
        stmt = select(Dataset).order_by(Dataset.id)
        if principal.role not in ("admin", "auditor"):
            granted = select(Grant.resource_id).where(
                Grant.user_id == principal.user_id, Grant.resource == "dataset"
            )
            projects = select(Grant.resource_id).where(
                Grant.user_id == principal.user_id, Grant.resource == "project"
            )
            stmt = stmt.where(
                or_(
                    Dataset.owner_user_id == principal.user_id,
                    Dataset.id.in_(granted),
                    Dataset.project_id.in_(projects),
                )
            )
        with self._p.store.session() as s:
            return list(s.scalars(stmt).all())

    def get(self, dataset_id: int) -> Dataset:
        with self._p.store.session() as s:
            return _get(s, Dataset, dataset_id, "dataset")

    def find(self, owner_party: str, name: str) -> Dataset | None:
        with self._p.store.session() as s:
            return s.scalars(
                select(Dataset).where(Dataset.owner_party == owner_party, Dataset.name == name)
            ).first()

    def delete(self, principal: Principal, dataset_id: int) -> None:
        with self._p.store.session() as s:
            ds = _get(s, Dataset, dataset_id, "dataset")
            target = f"{ds.owner_party}/{ds.name}"
            s.delete(ds)
        self._p.audit.append(principal.username, "dataset.delete", target)


def datasets_of_spec(spec_json: str) -> list[tuple[str, str]]:
    """``(party, dataset name)`` for every party of a stored job spec that names a dataset."""
    try:
        spec = json.loads(spec_json)
        parties = spec.get("parties") or {}
        return [(p, str(v["dataset"])) for p, v in parties.items() if v and v.get("dataset")]
    except (ValueError, AttributeError, TypeError):
        raise ConfigError("the stored job spec is not a JSON job spec") from None


class Approvals:
    """Each use of a dataset by a job is approved by the dataset's owner (8.3-1)."""

    def __init__(self, p: Platform) -> None:
        self._p = p

    def check_use(self, principal: Principal, spec_json: str) -> None:
        """Before a job is stored: every dataset it names is registered and usable by the caller."""
        for party, name in datasets_of_spec(spec_json):
            ds = self._p.datasets.find(party, name)
            if ds is None:
                raise NotFound(
                    f"dataset {name!r} of party {party!r} is not registered",
                    party=party,
                    remedy="its owner registers the dataset's metadata first (POST /api/v1/datasets)",
                )
            self._p.access.require(principal, "dataset", ds.id, "use")

    def request_for_job(self, job_id: str, actor: str = "platform") -> list[Approval]:
        """One pending approval per dataset the job names (idempotent)."""
        now = self._p.clock.now()
        with self._p.store.session() as s:
            job = _get(s, Job, job_id, "job")
            wanted = []
            for party, name in datasets_of_spec(job.spec):
                ds = s.scalars(
                    select(Dataset).where(Dataset.owner_party == party, Dataset.name == name)
                ).first()
                if ds is None:
                    raise NotFound(
                        f"dataset {name!r} of party {party!r} is not registered", party=party
                    )
                wanted.append(ds.id)
            have = {
                a.dataset_id for a in s.scalars(select(Approval).where(Approval.job_id == job_id))
            }
            for ds_id in wanted:
                if ds_id not in have:
                    s.add(Approval(job_id=job_id, dataset_id=ds_id, created_at=now))
        self._p.audit.append(actor, "approval.request", job_id, detail={"datasets": wanted})
        return self.for_job(job_id)

    def for_job(self, job_id: str) -> list[Approval]:
        with self._p.store.session() as s:
            stmt = select(Approval).where(Approval.job_id == job_id).order_by(Approval.id)
            return list(s.scalars(stmt).all())

    def status(self, job_id: str, session: Session | None = None) -> str:
        """``rejected`` if any owner said no, ``approved`` if every dataset is approved, else ``pending``.

        Inside an open transaction (the scheduler's), pass it as ``session``:
        SQLite transactions take the write lock first, so a second one would wait.
        """
        if session is None:
            with self._p.store.session() as s:
                return self.status(job_id, s)
        job = _get(session, Job, job_id, "job")
        named = datasets_of_spec(job.spec)
        rows = session.scalars(select(Approval).where(Approval.job_id == job_id)).all()
        states = [a.state for a in rows]
        if "rejected" in states:
            return "rejected"
        if len(rows) >= len(named) and all(st == "approved" for st in states):
            return "approved"
        return "pending"

    def approvals_complete(self, job_id: str, session: Session | None = None) -> bool:
        return self.status(job_id, session) == "approved"

    def list(
        self, principal: Principal, *, job_id: str | None = None, state: str | None = None
    ) -> list[Approval]:
        stmt = select(Approval).order_by(Approval.id)
        if job_id:
            stmt = stmt.where(Approval.job_id == job_id)
        if state:
            stmt = stmt.where(Approval.state == state)
        if principal.role not in ("admin", "auditor"):
            owned = select(Dataset.id).where(Dataset.owner_user_id == principal.user_id)
            authored = select(Job.id).where(Job.created_by == principal.user_id)
            stmt = stmt.where(or_(Approval.dataset_id.in_(owned), Approval.job_id.in_(authored)))
        with self._p.store.session() as s:
            return list(s.scalars(stmt).all())

    def decide(
        self, principal: Principal, approval_id: int, approve: bool, comment: str = ""
    ) -> Approval:
        with self._p.store.session() as s:
            row = _get(s, Approval, approval_id, "approval")
            ds = _get(s, Dataset, row.dataset_id, "dataset")
            if ds.owner_user_id != principal.user_id:
                raise PolicyDenied(
                    f"only the owner of dataset {ds.owner_party}/{ds.name} may decide on its use",
                    party=ds.owner_party,
                )
            if row.state != "pending":
                raise Conflict(f"approval {approval_id} was already {row.state}")
            row.state = "approved" if approve else "rejected"
            row.decided_by, row.decided_at, row.comment = (
                principal.user_id,
                self._p.clock.now(),
                comment,
            )
            target = f"{row.job_id}/{ds.owner_party}/{ds.name}"
        self._p.audit.append(
            principal.username, f"approval.{row.state}", target, detail={"comment": comment}
        )
        return row


class Models:
    def __init__(self, p: Platform) -> None:
        self._p = p

    def register(
        self,
        actor: str,
        *,
        job_id: str,
        party: str,
        name: str = "",
        path: str = "",
        version: int = 1,
        metrics: dict[str, Any] | None = None,
    ) -> ModelRecord:
        row = ModelRecord(
            job_id=job_id,
            party=party,
            name=name,
            path=path,
            version=version,
            metrics=metrics,
            created_at=self._p.clock.now(),
        )
        with self._p.store.session() as s:
            _get(s, Job, job_id, "job")
            s.add(row)
        self._p.audit.append(actor, "model.register", f"{job_id}/{party}", detail={"path": path})
        return row

    def list(self, principal: Principal, job_id: str | None = None) -> list[ModelRecord]:
        with self._p.store.session() as s:
            stmt = select(ModelRecord, Job).join(Job, Job.id == ModelRecord.job_id)
            if job_id:
                stmt = stmt.where(ModelRecord.job_id == job_id)
            rows = s.execute(stmt.order_by(ModelRecord.id)).all()
        return [m for m, job in rows if self._p.access.can_read_job(principal, job)]

    def get(self, principal: Principal, model_id: int) -> ModelRecord:
        with self._p.store.session() as s:
            row = _get(s, ModelRecord, model_id, "model")
            job = _get(s, Job, row.job_id, "job")
        self._p.access.require_job(principal, job)
        return row


class Nodes:
    def __init__(self, p: Platform) -> None:
        self._p = p

    def list(self) -> list[Node]:
        with self._p.store.session() as s:
            return list(s.scalars(select(Node).order_by(Node.id)).all())

    def get(self, node_id: str) -> Node:
        with self._p.store.session() as s:
            return _get(s, Node, node_id, "node")

    def delete(self, actor: str, node_id: str) -> None:
        with self._p.store.session() as s:
            s.delete(_get(s, Node, node_id, "node"))
        self._p.audit.append(actor, "node.delete", node_id)


class Jobs:
    """Read access to jobs for the platform's own routes; submission is the scheduler's."""

    def __init__(self, p: Platform) -> None:
        self._p = p

    def get(self, principal: Principal, job_id: str) -> Job:
        with self._p.store.session() as s:
            job = _get(s, Job, job_id, "job")
        self._p.access.require_job(principal, job)
        return job

    def check_submit(self, principal: Principal, spec_json: str, project_id: int | None) -> None:
        """The caller may run this spec: ``use`` on the project and on every dataset it names."""
        if project_id is not None:
            self._p.access.require(principal, "project", project_id, "use")
        self._p.approvals.check_use(principal, spec_json)


class Platform:
    """One platform instance: its store and every service over it."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        clock: Clock | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.clock: Clock = clock or SystemClock()
        self.box = SecretBox.from_data_dir(self.data_dir)
        self.audit = AuditLog(store, self.clock)
        self.settings = SettingsService(store, self.clock, self.audit)
        self.auth = Authenticator(
            store, self.clock, self.box, self.settings, self.audit, hasher
        )
        self.access = Access(store)
        self.users = Users(self)
        self.projects = Projects(self)
        self.grants = Grants(self)
        self.datasets = Datasets(self)
        self.approvals = Approvals(self)
        self.models = Models(self)
        self.nodes = Nodes(self)
        self.jobs = Jobs(self)

    @classmethod
    def open(
        cls,
        data_dir: Path,
        db_url: str | None = None,
        clock: Clock | None = None,
        hasher: PasswordHasher | None = None,
    ) -> Platform:
        """Open (and migrate to head) the platform in ``data_dir``; SQLite there by default."""
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(db_url or sqlite_url(data_dir))
        store.upgrade()
        platform = cls(store, data_dir, clock, hasher)
        apply_log_level(platform.settings.current())
        return platform


__all__ = ["Platform", "datasets_of_spec", "level"]

"""Who may do what: the role table and the per-project / per-dataset grants.

Checked once per request by the API's dependencies (``api/deps.py``), never by
``if`` branches inside the operations (STYLE.md 13). Two layers:

1. **Role** — :data:`OPERATIONS` maps each operation to the roles that may
   attempt it at all.
2. **Resource** — for a project or dataset the caller also needs a grant of at
   least the given level (``read`` < ``use`` < ``manage``). Admins hold every
   grant on projects; a dataset's owner holds ``manage`` on it. Auditors read
   everything and change nothing.

A dataset owner's *approval* of each job's use of each dataset (8.3-1) is a
separate, per-job decision (``service.Approvals``); a grant lets an analyst
name the dataset in a job, the approval lets that job's tasks run.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from sharedml.errors import PolicyDenied
from sharedml.platform.auth import Principal
from sharedml.platform.errors import NotFound
from sharedml.platform.records import find_grant
from sharedml.platform.store import Store
from sharedml.platform.store.models import PERMISSIONS, Dataset, Job, Project
from sharedml.platform.tokens import allows

ALL = frozenset({"admin", "data_owner", "analyst", "auditor"})

#: operation -> roles that may attempt it.
OPERATIONS: dict[str, frozenset[str]] = {
    "users.manage": frozenset({"admin"}),
    "users.read": frozenset({"admin", "auditor"}),
    "projects.create": frozenset({"admin"}),
    "projects.read": ALL,
    "grants.manage": frozenset({"admin", "data_owner"}),
    "datasets.register": frozenset({"admin", "data_owner"}),
    "datasets.read": ALL,
    "approvals.read": ALL,
    "approvals.decide": frozenset({"data_owner"}),
    "jobs.submit": frozenset({"admin", "analyst"}),
    "jobs.read": ALL,
    "jobs.cancel": frozenset({"admin", "analyst"}),
    "models.read": ALL,
    "models.register": frozenset({"admin"}),
    "registry.read": ALL,
    "registry.tag": frozenset({"admin", "analyst"}),
    "registry.delete": frozenset({"data_owner"}),
    "nodes.read": ALL,
    "nodes.manage": frozenset({"admin"}),
    "audit.read": frozenset({"admin", "auditor"}),
    "audit.checkpoint": ALL,
    "settings.read": frozenset({"admin", "auditor"}),
    "settings.write": frozenset({"admin"}),
    "self": ALL,
}


#: The roles that act for their party on its datasets (register, grant, approve).
PARTY_ROLES = frozenset({"admin", "data_owner"})


def is_member(principal: Principal, party: str) -> bool:
    """Whether the caller acts for ``party`` on its datasets: a data owner or admin of it."""
    return principal.party == party and principal.role in PARTY_ROLES


def require_member(principal: Principal, party: str, what: str) -> None:
    """Only ``party``'s own data owners and admins may ``what`` its datasets (issue 14)."""
    if not is_member(principal, party):
        raise PolicyDenied(
            f"{principal.username!r} may not {what} datasets of party {party!r}: "
            f"only that party's data owners and admins may",
            party=party,
            remedy=f"an administrator adds the user to party {party!r}, or a member of it acts",
        )


def level(permission: str) -> int:
    return PERMISSIONS.index(permission)


def check_role(principal: Principal, operation: str) -> None:
    """The caller's role may attempt ``operation``, and so may its API token's scopes."""
    if principal.role not in OPERATIONS[operation]:
        raise PolicyDenied(
            f"role {principal.role!r} may not perform {operation!r}",
            remedy="ask an administrator for a role that allows it",
        )
    if principal.via == "token" and not allows(principal.scopes, operation):
        raise PolicyDenied(
            f"this API token's scopes {list(principal.scopes)} do not include {operation!r}",
            remedy="create a token with that scope",
        )


class Access:
    """Resource-level checks against the grants table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def grant_level(self, principal: Principal, resource: str, resource_id: int) -> int:
        """The caller's level on a project or dataset (-1: none)."""
        with self._store.reading() as s:
            if resource == "project":
                if s.get(Project, resource_id) is None:
                    raise NotFound(f"project {resource_id} does not exist")
                if principal.role in ("admin", "auditor"):
                    return level("manage") if principal.role == "admin" else level("read")
            else:
                ds = s.get(Dataset, resource_id)
                if ds is None:
                    raise NotFound(f"dataset {resource_id} does not exist")
                if is_member(principal, ds.owner_party):
                    return level("manage")
                if principal.role in ("admin", "auditor"):
                    return level("read")
                direct = self._stored(s, principal.user_id, resource, resource_id)
                member = ds.project_id is not None and (
                    self._stored(s, principal.user_id, "project", ds.project_id) >= 0
                )
                return max(direct, level("read")) if member else direct
            return self._stored(s, principal.user_id, resource, resource_id)

    @staticmethod
    def _stored(s: Session, user_id: int, resource: str, resource_id: int) -> int:
        row = find_grant(s, user_id, resource, resource_id)
        return level(row.permission) if row else -1

    def require(
        self, principal: Principal, resource: str, resource_id: int, permission: str
    ) -> None:
        if self.grant_level(principal, resource, resource_id) < level(permission):
            raise PolicyDenied(
                f"{principal.username!r} lacks {permission!r} on {resource} {resource_id}",
                remedy=f"ask the {resource}'s owner or an administrator for a grant",
            )

    def can_read_job(self, principal: Principal, job: Job) -> bool:
        """Admins and auditors see every job; others their own and their projects' jobs."""
        if principal.role in ("admin", "auditor") or job.created_by == principal.user_id:
            return True
        if job.project_id is not None:
            return self.grant_level(principal, "project", job.project_id) >= level("read")
        return False

    def require_job(self, principal: Principal, job: Job, permission: str = "read") -> None:
        """``read`` a job as above; ``use`` it (cancel) only as its author, a project manager or admin."""
        if permission == "read" and self.can_read_job(principal, job):
            return
        if principal.role == "admin" or job.created_by == principal.user_id:
            return
        if job.project_id is not None and self.grant_level(
            principal, "project", job.project_id
        ) >= level("manage"):
            return
        raise PolicyDenied(
            f"{principal.username!r} may not {permission} job {job.id}",
            remedy="only the job's author, its project's managers or an admin may",
        )

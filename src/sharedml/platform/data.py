"""Dataset metadata and the owners' approvals of each use (8.3-1).

Who acts on a party's datasets: only that party's members — users of the party
with the data_owner or admin role (:func:`~sharedml.platform.access.require_member`)
— register, grant and approve them (issue 14). Where the metadata comes from:
the node that holds the dataset reports its name, columns and rows at hello
(:meth:`Datasets.from_node`); an owner's registration adopts that record (or
declares one the node will overwrite when it reports). An approval carries the
owner's signature over the job's spec (:mod:`sharedml.approvals`), which the
nodes — not the platform — check before they read the data.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sharedml.approvals import SignedApproval
from sharedml.errors import ConfigError, PolicyDenied
from sharedml.platform.access import require_member
from sharedml.platform.auth import Principal
from sharedml.platform.errors import Conflict, NotFound
from sharedml.platform.records import get_or_404
from sharedml.platform.signed_approvals import check_signed
from sharedml.platform.store.models import (
    Approval,
    Dataset,
    Grant,
    Job,
    Project,
)

if TYPE_CHECKING:
    from sharedml.platform.service import Platform


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
        """Record a dataset's metadata; the caller (a member of ``owner_party``) owns it.

        A record its node reported is adopted as is (the node's columns and rows
        win over the caller's); else the caller's declaration stands until the node
        reports the dataset."""
        require_member(principal, owner_party, "register")
        adopted = self._adopt(principal, owner_party, name, project_id, description)
        if adopted is not None:
            return adopted
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
                    get_or_404(s, Project, project_id, "project")
                s.add(ds)
                s.flush()  # a duplicate name fails here, before the audit entry
                self._p.audit.append_in(s, principal.username, "dataset.register",
                                        f"{owner_party}/{name}",
                                        detail={"columns": len(columns), "rows": row_count})
        except IntegrityError:
            raise Conflict(f"party {owner_party!r} already has a dataset {name!r}") from None
        return ds

    def _adopt(self, principal: Principal, party: str, name: str, project_id: int | None,
               description: str) -> Dataset | None:
        with self._p.store.session() as s:
            ds = s.scalars(
                select(Dataset).where(Dataset.owner_party == party, Dataset.name == name)
            ).first()
            if ds is None:
                return None
            if ds.owner_user_id is not None or ds.node_reported_at is None:
                raise Conflict(f"party {party!r} already has a dataset {name!r}")
            if project_id is not None:
                get_or_404(s, Project, project_id, "project")
            ds.owner_user_id, ds.project_id = principal.user_id, project_id
            ds.description = description
            self._p.audit.append_in(s, principal.username, "dataset.register", f"{party}/{name}",
                                    detail={"columns": len(ds.columns), "rows": ds.row_count,
                                            "reported_by": "node"})
        return ds

    def from_node(self, s: Session, party: str, records: list[dict[str, Any]]) -> None:
        """Inside the node service's transaction: the records node ``party`` reported at
        hello (its certificate says which party) become that party's dataset metadata."""
        now = self._p.clock.now()
        for record in records:
            ds = s.scalars(select(Dataset).where(
                Dataset.owner_party == party, Dataset.name == record["name"])).first()
            if ds is None:
                ds = Dataset(owner_party=party, name=record["name"], created_at=now)
                s.add(ds)
            columns = [{"name": c["name"], "type": c["type"]} for c in record["columns"]]
            ds.columns, ds.row_count, ds.node_reported_at = columns, record.get("rows"), now
        if records:
            self._p.audit.append_in(s, f"node:{party}", "dataset.report", party,
                                    detail={"datasets": sorted(r["name"] for r in records)})

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
        with self._p.store.reading() as s:
            return list(s.scalars(stmt).all())

    def get(self, dataset_id: int) -> Dataset:
        with self._p.store.reading() as s:
            return get_or_404(s, Dataset, dataset_id, "dataset")

    def find(self, owner_party: str, name: str) -> Dataset | None:
        with self._p.store.reading() as s:
            return s.scalars(
                select(Dataset).where(Dataset.owner_party == owner_party, Dataset.name == name)
            ).first()

    def delete(self, principal: Principal, dataset_id: int) -> None:
        with self._p.store.session() as s:
            ds = get_or_404(s, Dataset, dataset_id, "dataset")
            require_member(principal, ds.owner_party, "retire")
            target = f"{ds.owner_party}/{ds.name}"
            s.delete(ds)
            self._p.audit.append_in(s, principal.username, "dataset.delete", target)


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
        with self._p.store.session() as s:
            self.request_in(s, get_or_404(s, Job, job_id, "job"), actor)
        return self.for_job(job_id)

    def request_in(self, s: Session, job: Job, actor: str = "platform") -> None:
        """:meth:`request_for_job` inside the caller's transaction — the scheduler's,
        which stores the job: a job is never stored without its approvals."""
        now = self._p.clock.now()
        wanted = []
        for party, name in datasets_of_spec(job.spec):
            ds = s.scalars(
                select(Dataset).where(Dataset.owner_party == party, Dataset.name == name)
            ).first()
            if ds is None:
                raise NotFound(f"dataset {name!r} of party {party!r} is not registered", party=party)
            wanted.append(ds.id)
        have = {a.dataset_id for a in s.scalars(select(Approval).where(Approval.job_id == job.id))}
        for ds_id in wanted:
            if ds_id not in have:
                s.add(Approval(job_id=job.id, dataset_id=ds_id, created_at=now))
        s.flush()
        self._p.audit.append_in(s, actor, "approval.request", job.id, detail={"datasets": wanted})

    def for_job(self, job_id: str) -> list[Approval]:
        with self._p.store.reading() as s:
            stmt = select(Approval).where(Approval.job_id == job_id).order_by(Approval.id)
            return list(s.scalars(stmt).all())

    def status(self, job_id: str, session: Session | None = None) -> str:
        """``rejected`` if any owner said no, ``approved`` if every dataset is approved, else ``pending``.

        Inside an open transaction (the scheduler's), pass it as ``session``:
        SQLite transactions take the write lock first, so a second one would wait.
        """
        if session is None:
            with self._p.store.reading() as s:
                return self.status(job_id, s)
        job = get_or_404(session, Job, job_id, "job")
        named = datasets_of_spec(job.spec)
        rows = session.scalars(select(Approval).where(Approval.job_id == job_id)).all()
        states = [a.state for a in rows]
        if "rejected" in states or self.missing(session, named):
            return "rejected"
        if len(rows) >= len(named) and all(st == "approved" for st in states):
            return "approved"
        return "pending"

    @staticmethod
    def missing(session: Session, named: list[tuple[str, str]]) -> list[str]:
        """The datasets (``party/name``) among ``named`` that have no record — deleted
        while a job waited: no owner is left to approve, so the job must fail, not wait."""
        gone = []
        for party, name in named:
            stmt = select(Dataset.id).where(Dataset.owner_party == party, Dataset.name == name)
            if session.scalar(stmt) is None:
                gone.append(f"{party}/{name}")
        return gone

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
        with self._p.store.reading() as s:
            return list(s.scalars(stmt).all())

    def spec_for(self, principal: Principal, approval_id: int) -> tuple[Approval, Dataset, Any]:
        """What an owner signs: the approval, its dataset and the job's spec as stored."""
        with self._p.store.session() as s:
            row = get_or_404(s, Approval, approval_id, "approval")
            ds = get_or_404(s, Dataset, row.dataset_id, "dataset")
            require_member(principal, ds.owner_party, "approve uses of")
            job = get_or_404(s, Job, row.job_id, "job")
            return row, ds, json.loads(job.spec)

    def decide(
        self, principal: Principal, approval_id: int, approve: bool, comment: str = "",
        signed: SignedApproval | None = None,
    ) -> Approval:
        """An owner's decision; an approval the nodes will honour carries ``signed``,
        the owner's signature over this job's spec (checked here for the right job,
        party, dataset and spec hash; its key is checked by the nodes)."""
        with self._p.store.session() as s:
            row = get_or_404(s, Approval, approval_id, "approval")
            ds = get_or_404(s, Dataset, row.dataset_id, "dataset")
            require_member(principal, ds.owner_party, "approve uses of")
            if ds.owner_user_id not in (None, principal.user_id) and principal.role != "admin":
                raise PolicyDenied(
                    f"only the owner of dataset {ds.owner_party}/{ds.name} may decide on its use",
                    party=ds.owner_party,
                )
            if row.state != "pending":
                raise Conflict(f"approval {approval_id} was already {row.state}")
            if approve and signed is not None:
                check_signed(signed, row, ds, s)
                row.signer, row.signature = signed.signer, signed.signature
                row.spec_sha256 = signed.spec_sha256
            row.state = "approved" if approve else "rejected"
            row.decided_by, row.decided_at, row.comment = (
                principal.user_id,
                self._p.clock.now(),
                comment,
            )
            target = f"{row.job_id}/{ds.owner_party}/{ds.name}"
            # in the decision's transaction: a busy store refuses both (a 503 that had
            # stored the decision made the owner's retry a 409, bench/load.py)
            self._p.audit.append_in(
                s, principal.username, f"approval.{row.state}", target, detail={"comment": comment}
            )
        return row


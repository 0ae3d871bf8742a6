"""Models, nodes and read access to jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from sharedml.platform.auth import Principal
from sharedml.platform.records import get_or_404
from sharedml.platform.store.models import (
    Job,
    ModelRecord,
    Node,
)

if TYPE_CHECKING:
    from sharedml.platform.service import Platform


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
            get_or_404(s, Job, job_id, "job")
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
        with self._p.store.reading() as s:
            row = get_or_404(s, ModelRecord, model_id, "model")
            job = get_or_404(s, Job, row.job_id, "job")
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
            return get_or_404(s, Node, node_id, "node")

    def delete(self, actor: str, node_id: str) -> None:
        with self._p.store.session() as s:
            s.delete(get_or_404(s, Node, node_id, "node"))
        self._p.audit.append(actor, "node.delete", node_id)


class Jobs:
    """Read access to jobs for the platform's own routes; submission is the scheduler's."""

    def __init__(self, p: Platform) -> None:
        self._p = p

    def get(self, principal: Principal, job_id: str) -> Job:
        with self._p.store.reading() as s:
            job = get_or_404(s, Job, job_id, "job")
        self._p.access.require_job(principal, job)
        return job

    def check_submit(self, principal: Principal, spec_json: str, project_id: int | None) -> None:
        """The caller may run this spec: ``use`` on the project and on every dataset it names."""
        if project_id is not None:
            self._p.access.require(principal, "project", project_id, "use")
        self._p.approvals.check_use(principal, spec_json)

"""Models, the model registry, nodes and read access to jobs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from sharedml.errors import ConfigError, PolicyDenied
from sharedml.modelpart.refs import (
    ENCLAVE,
    ModelRef,
    Resolved,
    check_alias,
    makes_model,
    model_name,
    resolve_spec,
    spec_hash,
)
from sharedml.platform.auth import Principal
from sharedml.platform.data import datasets_of_spec
from sharedml.platform.errors import NotFound
from sharedml.platform.records import get_or_404
from sharedml.platform.store.models import (
    Dataset,
    Job,
    ModelAlias,
    ModelRecord,
    ModelVersion,
    Node,
    Task,
    User,
)

if TYPE_CHECKING:
    from sharedml.platform.service import Platform
    from sharedml.platform.tee_models import SealedVersion


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
            self._p.audit.append_in(s, actor, "model.register", f"{job_id}/{party}",
                                    detail={"path": path})
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
            self._p.audit.append_in(s, actor, "node.delete", node_id)


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


class ModelRegistry:
    """Model versions registered by the jobs that trained them (issue 12 item 1).

    * :meth:`record_job` runs in the transaction that marks a job succeeded:
      each ``train`` step whose every data party reported a part (the same
      ``model_uid``, its own ``fingerprint``) becomes the next version of the
      model's name (:func:`~sharedml.modelpart.refs.model_name`). The registry
      holds metadata, public metrics and the parts' fingerprints; the parts
      stay at the parties' nodes.
    * Versions are immutable. Aliases (``production``, ``candidate``) move
      between a name's versions with :meth:`tag`, audited with where from and to.
    * :meth:`resolve_spec` turns a submitted job's ``predict: {model:
      NAME@ALIAS}`` into the uid and the fingerprints each party must find.
    * :meth:`consent_delete`: each owner of a dataset the training job used
      consents for that dataset's party; the version goes when every party has.
      Each party's node removes its own part file; the platform holds none but
      a TEE version's sealed blob, which goes with the version (:attr:`sealed`).
    """

    def __init__(self, p: Platform) -> None:
        self._p = p
        #: Where the platform keeps TEE versions' sealed blobs
        #: (:class:`~sharedml.platform.tee_models.SealedShelf`), when it runs TEE jobs.
        self.sealed: Any = None

    # -- filled by jobs --------------------------------------------------------------
    def record_job(self, s: Session, job: Job, tasks: Iterable[Task],
                   actor: str = "scheduler") -> list[ModelVersion]:
        """Register the model of every train step (and retraining tune step) of a
        just-succeeded ``job``."""
        by_step: dict[str, dict[str, dict[str, Any]]] = {}
        for t in tasks:
            if t.metrics and makes_model(t.component, t.metrics):
                by_step.setdefault(t.step_id, {})[t.party] = t.metrics
        made = []
        for step, parts in by_step.items():
            uids = {m.get("model_uid") for m in parts.values()}
            if len(uids) != 1:
                self._p.audit.append_in(s, actor, "model.register", f"{job.id}/{step}",
                                        outcome="refused", detail={"uids": sorted(map(str, uids))})
                continue
            made.append(self._add(s, job, step, str(uids.pop()), sorted(parts),
                                  {p: str(m["fingerprint"]) for p, m in parts.items()},
                                  {p: {k: v for k, v in m.items() if k not in ("fingerprint", "model_uid")}
                                   for p, m in parts.items()}, actor))
        return made

    def record_sealed(self, s: Session, job: Job, sealed: Iterable[SealedVersion],
                      actor: str = "scheduler") -> list[ModelVersion]:
        """Register each model a just-succeeded ``scheme: tee`` job trained, as the enclave
        sealed it: one fingerprint (:data:`~sharedml.modelpart.refs.ENCLAVE`, the blob's
        SHA-256) and the enclave's public metrics; ``parties`` are the spec's data parties,
        whose owners consent to deleting it. The blob is the platform's TEE artefact
        (:mod:`sharedml.platform.tee_models`), never parameters."""
        parties = sorted(json.loads(job.spec).get("parties", {}))
        return [self._add(s, job, v.step, v.uid, parties, {ENCLAVE: v.fingerprint}, {ENCLAVE: v.metrics}, actor)
                for v in sealed]

    def _add(self, s: Session, job: Job, step: str, uid: str, parties: list[str],
             fingerprints: dict[str, str], metrics: dict[str, Any], actor: str) -> ModelVersion:
        """The next version of the step's model name (audited)."""
        name = model_name(job.name, step)
        latest = s.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name)) or 0
        row = ModelVersion(uid=uid, name=name, version=latest + 1, job_id=job.id, step=step,
                           spec_hash=spec_hash(json.loads(job.spec)), parties=parties,
                           fingerprints=fingerprints, metrics=metrics,
                           created_by=self._author(s, job), created_at=self._p.clock.now())
        s.add(row)
        s.flush()
        self._p.audit.append_in(s, actor, "model.register", f"{name}@{row.version}",
                                detail={"uid": row.uid, "job": job.id})
        return row

    @staticmethod
    def _author(s: Session, job: Job) -> str:
        user = s.get(User, job.created_by) if job.created_by is not None else None
        return user.username if user is not None else ""

    # -- reading ----------------------------------------------------------------------
    def versions(self, principal: Principal, name: str | None = None) -> list[ModelVersion]:
        with self._p.store.session() as s:
            stmt = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
            if name:
                stmt = stmt.where(ModelVersion.name == name)
            rows = list(s.scalars(stmt).all())
            return [r for r in rows if self._may_read(s, principal, r)]

    def get(self, principal: Principal, ref: str) -> ModelVersion:
        """A version by ``NAME@ALIAS``, ``NAME@VERSION`` or uid."""
        with self._p.store.session() as s:
            row = self._find(s, ModelRef.parse(ref))
            if not self._may_read(s, principal, row):
                raise PolicyDenied(f"{principal.username!r} may not read model {ref}",
                                   remedy="ask for read access to its training job's project")
            return row

    def aliases(self, uid: str) -> list[str]:
        with self._p.store.session() as s:
            return sorted(s.scalars(select(ModelAlias.alias).where(ModelAlias.uid == uid)).all())

    def resolve_spec(self, principal: Principal, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec`` with its predict steps' models resolved (see the class docstring)."""
        def resolve(ref: ModelRef) -> Resolved:
            row = self.get(principal, str(ref))
            return Resolved(row.uid, row.name, row.version, dict(row.fingerprints))

        return resolve_spec(spec, resolve)

    def _find(self, s: Session, ref: ModelRef) -> ModelVersion:
        if ref.uid is not None:
            row = s.get(ModelVersion, ref.uid)
        elif ref.alias is not None:
            alias = s.get(ModelAlias, (ref.name, ref.alias))
            row = None if alias is None else s.get(ModelVersion, alias.uid)
        else:
            row = s.scalar(select(ModelVersion).where(ModelVersion.name == ref.name,
                                                      ModelVersion.version == ref.version))
        if row is None:
            raise NotFound(f"model {ref} does not exist",
                           remedy="list versions and aliases with 'sharedml model list'")
        return row

    def _may_read(self, s: Session, principal: Principal, row: ModelVersion) -> bool:
        if principal.role in ("admin", "auditor"):
            return True
        job = s.get(Job, row.job_id) if row.job_id else None
        return job is not None and self._p.access.can_read_job(principal, job)

    # -- changing ---------------------------------------------------------------------
    def tag(self, principal: Principal, ref: str, alias: str) -> ModelVersion:
        """Point ``alias`` of the version's name at it (audited: from which version)."""
        check_alias(alias)
        with self._p.store.session() as s:
            row = self._find(s, ModelRef.parse(ref))
            job = s.get(Job, row.job_id) if row.job_id else None
            if principal.role != "admin" and (job is None or job.created_by != principal.user_id):
                raise PolicyDenied(f"{principal.username!r} may not tag {row.name}",
                                   remedy="the training job's author or an admin tags versions")
            current = s.get(ModelAlias, (row.name, alias))
            before = None if current is None else s.get(ModelVersion, current.uid)
            if current is None:
                s.add(ModelAlias(name=row.name, alias=alias, uid=row.uid,
                                 updated_at=self._p.clock.now()))
            else:
                current.uid, current.updated_at = row.uid, self._p.clock.now()
            self._p.audit.append_in(s, principal.username, "model.tag", f"{row.name}@{alias}",
                                    detail={"from": before.version if before else None,
                                            "to": row.version, "uid": row.uid})
            return row

    def consent_delete(self, principal: Principal, ref: str) -> dict[str, Any]:
        """Record the caller's consent for the parties whose datasets they own; delete
        the version once every party consented. ``{deleted, consent, missing}``."""
        with self._p.store.session() as s:
            row = self._find(s, ModelRef.parse(ref))
            job = s.get(Job, row.job_id) if row.job_id else None
            if job is None:
                raise ConfigError(f"model {ref}'s training job is gone: its owners are unknown",
                                  remedy="restore the job from a backup to delete the version")
            owned = {party for party, name in datasets_of_spec(job.spec)
                     if s.scalar(select(Dataset.id).where(
                         Dataset.owner_party == party, Dataset.name == name,
                         Dataset.owner_user_id == principal.user_id)) is not None}
            if not owned & set(row.parties):
                raise PolicyDenied(f"{principal.username!r} owns no dataset of {ref}'s parties",
                                   remedy="each owner of a training dataset consents in turn")
            consent = sorted(set(row.delete_consent) | (owned & set(row.parties)))
            row.delete_consent = consent
            missing = sorted(set(row.parties) - set(consent))
            target = f"{row.name}@{row.version}"
            self._p.audit.append_in(s, principal.username, "model.delete-consent", target,
                                    detail={"parties": sorted(owned), "missing": missing})
            if not missing:
                s.execute(delete(ModelAlias).where(ModelAlias.uid == row.uid))
                s.delete(row)
                self._p.audit.append_in(s, principal.username, "model.delete", target,
                                        detail={"uid": row.uid})
            out = {"uid": row.uid, "deleted": not missing, "consent": consent, "missing": missing}
            sealed_blob = ENCLAVE in row.fingerprints
        if out["deleted"] and sealed_blob and self.sealed is not None:
            self.sealed.drop(out["uid"])  # once the deletion committed
        return out

"""The platform's TEE models: kept sealed, registered, handed back to an enclave for scoring.

A ``scheme: tee`` job's model never leaves the enclave in clear except to a
recipient every owner named (the label holder's release). For batch scoring
by a later job it leaves once more, sealed to the enclave's sealing identity
(:mod:`sharedml.tee.enclave.saved`); the platform keeps that blob as a TEE
artefact and registers it in the model registry, the table MPC versions use.

1. *keep* (:meth:`SealedShelf.keep`, after a run that succeeded): each
   ``train`` step's sealed model goes to ``HOME/models/<uid>.sealed`` (owner
   read/write only) and becomes a :class:`SealedVersion` — uid, the blob's
   SHA-256 as its one fingerprint (:data:`~sharedml.modelpart.refs.ENCLAVE`),
   the enclave's public metrics — which
   :meth:`~sharedml.platform.registry.ModelRegistry.record_sealed` registers in
   the transaction that marks the job succeeded.
2. *check* (:meth:`SealedShelf.check`, at submit): every ``predict {model:}``
   of a TEE spec must name a version the REST API resolved
   (:meth:`~sharedml.platform.registry.ModelRegistry.resolve_spec`: uid and
   fingerprint in the stored spec, so a tag moved later changes nothing) that a
   TEE job trained and whose blob is kept here.
3. *hand over* (:meth:`SealedShelf.blobs`, at run): the blobs the steps name go
   in the run request; the enclave checks each against the fingerprint in the
   step (a blob swapped on the platform's disk is refused inside) and unseals
   it (a blob sealed to another enclave identity does not open).
4. *drop* (:meth:`SealedShelf.drop`): when every owner consented to deleting
   the version, its blob goes with it.

Reveals: to the platform and whoever reads its disk, each sealed model's size
and SHA-256 and the registry's metadata (as for MPC versions) — no parameter.
Security model: the platform is trusted for availability only; a blob it
swaps, loses or takes from another deployment fails the job naming the step,
it cannot make the enclave score with a model other than the registered one.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from sharedml.errors import ConfigError
from sharedml.modelpart import write_private
from sharedml.modelpart.refs import ENCLAVE, ModelRef
from sharedml.platform.store.models import Job
from sharedml.tee.enclave.saved import fingerprint


@dataclass(frozen=True)
class SealedVersion:
    """A model a TEE job trained, kept sealed: what the registry records of it."""

    step: str
    uid: str
    fingerprint: str
    metrics: dict[str, Any] = field(default_factory=dict)


class SealedRegistry(Protocol):
    """Where sealed versions are registered (:class:`~sharedml.platform.registry.ModelRegistry`)."""

    def record_sealed(self, s: Session, job: Job, sealed: Iterable[SealedVersion],
                      actor: str = "scheduler") -> list[Any]: ...


class SealedShelf:
    """The sealed models under ``HOME/models`` (module docstring)."""

    def __init__(self, home: Path) -> None:
        self.folder = Path(home) / "models"

    def path(self, uid: str) -> Path:
        return self.folder / f"{uid}.sealed"

    def drop(self, uid: str) -> None:
        """Remove a deleted version's blob (every owner consented: the registry deletes the version)."""
        self.path(uid).unlink(missing_ok=True)

    # -- 1. keep
    def keep(self, sealed: dict[str, str], metrics: dict[str, dict[str, Any]]) -> list[SealedVersion]:
        """Write each step's sealed model (base64, as the enclave's run answer has it); their versions."""
        kept = []
        for step, text in sorted(sealed.items()):
            blob = base64.b64decode(text, validate=True)
            uid = uuid.uuid4().hex
            write_private(self.path(uid), blob)
            kept.append(SealedVersion(step, uid, fingerprint(blob), dict(metrics.get(step, {}))))
        return kept

    # -- 2. check
    def check(self, steps: list[Any]) -> None:
        """Refuse a ``predict {model:}`` step that names no resolved TEE version kept here."""
        for s in steps:
            model = getattr(s.params, "model", None) if s.component == "predict" else None
            if not model:
                continue
            prints = dict(s.params.fingerprints or {})
            if ModelRef.parse(str(model)).uid is None or not prints:
                raise ConfigError(f"step {s.id!r}: model {model} is not resolved from the registry", step=s.id,
                                  remedy="submit through the platform's API or SDK, which resolves NAME@ALIAS")
            if ENCLAVE not in prints:
                raise ConfigError(f"step {s.id!r}: model {model} was trained by a scheme: mpc job (parts of "
                                  f"{sorted(prints)}); a TEE job scores TEE-trained models", step=s.id,
                                  remedy="score it with a scheme: mpc job")
            if not self.path(str(model)).exists():
                raise ConfigError(f"step {s.id!r}: the sealed blob of model {model} is not kept by this "
                                  f"platform ({self.path(str(model))})", step=s.id,
                                  remedy="restore the platform's TEE folder from its backup, or train again")

    # -- 3. hand over
    def blobs(self, steps: list[Any]) -> dict[str, str]:
        """``uid -> base64 blob`` of every model the steps score with (the run request's ``saved``)."""
        self.check(steps)
        return {str(s.params.model): base64.b64encode(self.path(str(s.params.model)).read_bytes()).decode()
                for s in steps if s.component == "predict" and getattr(s.params, "model", None)}

"""The platform's operations, as the REST API, the CLI and the scheduler use them.

:class:`Platform` bundles one store with its clock, key, audit log, runtime
settings, authenticator and access checks, and exposes one service object per
area (``directory``: users, projects, grants; ``data``: datasets and
approvals; ``registry``: models, nodes, jobs). Role and grant checks happen in the API's dependencies before a call
lands here; the services scope listings to what the caller may see, write the
audit log and raise the platform's errors (``platform/errors.py``).

For the scheduler: :meth:`Approvals.request_for_job` creates the pending
approvals a new job needs, :meth:`Approvals.approvals_complete` says whether
every dataset owner has approved (8.3-1; no task touching a dataset runs
before), :meth:`Approvals.status` tells a rejection apart.
"""

from __future__ import annotations

from pathlib import Path

from argon2 import PasswordHasher

from sharedml.platform.access import Access, level
from sharedml.platform.audit import AuditLog
from sharedml.platform.audit_checkpoints import PURPOSE as CHECKPOINT_PURPOSE
from sharedml.platform.audit_checkpoints import CheckpointSigner
from sharedml.platform.audit_mac import PURPOSE as MAC_PURPOSE
from sharedml.platform.audit_mac import AuditMac
from sharedml.platform.auth import Authenticator
from sharedml.platform.clock import Clock, SystemClock
from sharedml.platform.data import Approvals, Datasets, datasets_of_spec
from sharedml.platform.db_password import with_password
from sharedml.platform.directory import Grants, Projects, Users
from sharedml.platform.keys import SecretBox
from sharedml.platform.registry import Jobs, ModelRegistry, Models, Nodes
from sharedml.platform.runtime import SettingsService, apply_log_level
from sharedml.platform.store import Store, sqlite_url


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
        self.audit = AuditLog(store, self.clock, AuditMac(self.box.derive(MAC_PURPOSE)))
        self.checkpoints = CheckpointSigner(self.box.derive(CHECKPOINT_PURPOSE))
        self.settings = SettingsService(store, self.clock, self.audit)
        self.auth = Authenticator(store, self.clock, self.box, self.settings, self.audit, hasher)
        self.access = Access(store)
        self.users = Users(self)
        self.projects = Projects(self)
        self.grants = Grants(self)
        self.datasets = Datasets(self)
        self.approvals = Approvals(self)
        self.models = Models(self)
        self.registry = ModelRegistry(self)
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
        """Open (and migrate to head) the platform in ``data_dir``; SQLite there by default.
        A ``db_url`` without a password takes the one in ``data_dir/db.password``, if any
        (:mod:`sharedml.platform.db_password`)."""
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(with_password(db_url, data_dir) if db_url else sqlite_url(data_dir))
        store.upgrade()
        platform = cls(store, data_dir, clock, hasher)
        apply_log_level(platform.settings.current())
        return platform


__all__ = [
    "Approvals",
    "Datasets",
    "Grants",
    "Jobs",
    "Models",
    "Nodes",
    "Platform",
    "Projects",
    "Users",
    "datasets_of_spec",
    "level",
]

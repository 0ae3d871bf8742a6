"""Users, projects and the grants on projects and datasets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from sharedml.errors import ConfigError
from sharedml.platform.auth import Principal
from sharedml.platform.errors import Conflict, NotFound
from sharedml.platform.records import find_grant, get_or_404
from sharedml.platform.store.models import (
    PERMISSIONS,
    ROLES,
    Grant,
    Project,
    User,
)
from sharedml.platform.tokens import revoke_all_in

if TYPE_CHECKING:
    from sharedml.platform.service import Platform


class Users:
    def __init__(self, p: Platform) -> None:
        self._p = p

    def create(
        self, actor: str, username: str, password: str, role: str, *, totp: bool = True,
        party: str | None = None,
    ) -> tuple[User, str | None]:
        """A new user, of ``party`` if given (only a party's members act on its datasets)."""
        user, uri = self._p.auth.new_user(username, password, role, totp=totp, party=party)
        with self._p.store.session() as s:
            self._p.auth.add_user(s, user)
            self._p.audit.append_in(s, actor, "user.create", username,
                                    detail={"role": role, "totp": totp, "party": party})
        return user, uri

    def list(self) -> list[User]:
        with self._p.store.session() as s:
            return list(s.scalars(select(User).order_by(User.id)).all())

    def get(self, user_id: int) -> User:
        with self._p.store.session() as s:
            return get_or_404(s, User, user_id, "user")

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
        party: str | None = None,
    ) -> User:
        if role is not None and role not in ROLES:
            raise ConfigError(f"unknown role {role!r}", remedy=f"use one of {list(ROLES)}")
        changed: dict[str, Any] = {}
        hashed = None if password is None else self._p.auth.hash_password(password)
        with self._p.store.session() as s:
            user = get_or_404(s, User, user_id, "user")
            if role is not None:
                user.role = changed["role"] = role
            if disabled is not None:
                user.disabled = changed["disabled"] = disabled
            if hashed is not None:
                user.password_hash = hashed
                revoke_all_in(s, user.id)  # a new password ends every session and token
                changed["password"] = "changed; sessions and tokens revoked"
            if unlock:
                user.locked_until, user.failed_attempts = None, 0
                self._p.auth.guard.forget(user.username)
                changed["unlock"] = True
            if party is not None:
                user.party = changed["party"] = party
            self._p.audit.append_in(s, actor, "user.update", user.username, detail=changed)
        return user

    def set_locale(self, actor: str, user_id: int, locale: str) -> User:
        """The user's console language (``i18n.LANGUAGES``), audited."""
        with self._p.store.session() as s:
            user = get_or_404(s, User, user_id, "user")
            user.locale = locale
            self._p.audit.append_in(s, actor, "user.locale", user.username,
                                    detail={"locale": locale})
        return user

    def reset_totp(self, actor: str, user_id: int) -> str:
        with self._p.store.session() as s:
            uri = self._p.auth.reset_totp(s, user_id)
            self._p.audit.append_in(s, actor, "user.totp.reset", str(user_id))
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
            self._p.audit.append_in(s, principal.username, "project.create", name)
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
            return get_or_404(s, Project, project_id, "project")


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
            get_or_404(s, User, user_id, "user")
            row = find_grant(s, user_id, resource, resource_id)
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
            self._p.audit.append_in(s, principal.username, "grant.set", f"{resource}/{resource_id}",
                                    detail={"user_id": user_id, "permission": permission})
        return row

    def revoke(self, principal: Principal, resource: str, resource_id: int, user_id: int) -> None:
        with self._p.store.session() as s:
            row = find_grant(s, user_id, resource, resource_id)
            if row is None:
                raise NotFound(f"user {user_id} has no grant on {resource} {resource_id}")
            s.delete(row)
            self._p.audit.append_in(s, principal.username, "grant.revoke",
                                    f"{resource}/{resource_id}", detail={"user_id": user_id})

    def list(self, resource: str, resource_id: int) -> list[Grant]:
        with self._p.store.session() as s:
            stmt = select(Grant).where(Grant.resource == resource, Grant.resource_id == resource_id)
            return list(s.scalars(stmt.order_by(Grant.id)).all())

    def grantee_names(self, resource: str, resource_id: int) -> dict[int, str]:
        """The names of the users holding a grant on the resource, by user id."""
        stmt = (select(User.id, User.username).join(Grant, Grant.user_id == User.id)
                .where(Grant.resource == resource, Grant.resource_id == resource_id))
        with self._p.store.reading() as s:
            return {int(uid): str(name) for uid, name in s.execute(stmt).all()}

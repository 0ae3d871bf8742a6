"""API tokens for scripts (9.2, issue 14 item 6): bounded in time and in reach.

Rules, each enforced here or in :func:`sharedml.platform.access.check_role`:

1. **Minted from a session.** A token is created by a user logged in with
   password and (if enrolled) TOTP, or by the operator's CLI on the database.
   A token cannot create tokens, so a leaked one cannot outlive itself.
2. **Expiry.** Every token expires: ``expires_days`` when created (default
   :data:`DEFAULT_DAYS`), never more than the ``token_max_days`` setting. A
   token stored without an end (before this rule) ends ``token_max_days``
   after it was made.
3. **Idle rule.** A token unused for ``token_idle_days`` no longer works. It
   has no TOTP of its own and no 30-minute idle expiry as a session has —
   which is why rules 1, 2 and 4 bound it instead.
4. **Scopes.** A token may carry scopes: operations (``jobs.read``) or areas
   (``jobs``, ``approvals``); ``*`` (the default) is everything the user's
   role allows. A call outside them is a 403. Scopes never widen a role.
5. **Revocation.** A token is revoked by its owner or an admin, and every
   token of a user is revoked when that user's password changes.

Only the SHA-256 of a token is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from sharedml.errors import AuthError, ConfigError, PolicyDenied
from sharedml.platform.errors import NotFound
from sharedml.platform.store.models import ApiToken, User, UserSession

if TYPE_CHECKING:
    from sharedml.platform.audit import AuditLog
    from sharedml.platform.auth import Principal
    from sharedml.platform.clock import Clock
    from sharedml.platform.runtime import SettingsService
    from sharedml.platform.store import Store

TOKEN_PREFIX = "smt_"
DEFAULT_DAYS = 30
#: ``last_used_at`` is written at most this often (each call would otherwise write).
TOUCH_S = 15.0


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scopes(scopes: list[str]) -> str:
    """The scopes as stored (space-separated); each must name an operation or an area."""
    from sharedml.platform.access import OPERATIONS

    areas = {op.split(".")[0] for op in OPERATIONS}
    for scope in scopes:
        if scope != "*" and scope not in OPERATIONS and scope not in areas:
            raise ConfigError(
                f"unknown token scope {scope[:48]!r}",
                remedy=f"use '*', an area of {sorted(areas)} or an operation such as 'jobs.read'",
            )
    return " ".join(sorted(set(scopes))) or "*"


def allows(scopes: tuple[str, ...], operation: str) -> bool:
    """Whether a token with ``scopes`` may attempt ``operation``."""
    area = operation.split(".")[0]
    return operation == "self" or any(s in ("*", operation, area) for s in scopes)


class Tokens:
    """Create, check, list and revoke API tokens."""

    def __init__(
        self, store: Store, clock: Clock, settings: SettingsService, audit: AuditLog
    ) -> None:
        self._store, self._clock, self._settings, self._audit = store, clock, settings, audit

    def create(
        self,
        principal: Principal,
        name: str,
        expires_days: int | None = None,
        scopes: list[str] | None = None,
    ) -> tuple[ApiToken, str]:
        if principal.via == "token":
            raise PolicyDenied("an API token cannot create API tokens",
                               remedy="log in with password (and TOTP) to create one")
        longest = self._settings.current().token_max_days
        days = expires_days or min(DEFAULT_DAYS, longest)
        if days > longest:
            raise ConfigError(f"an API token lasts at most {longest} days (token_max_days)",
                              remedy=f"ask for expires_days <= {longest}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock.now()
        row = ApiToken(user_id=principal.user_id, name=name, token_hash=digest(token),
                       created_at=now, expires_at=now + dt.timedelta(days=days),
                       scopes=check_scopes(scopes or ["*"]))
        with self._store.session() as s:
            s.add(row)
            self._audit.append_in(s, principal.username, "auth.token.create", name,
                                  detail={"days": days, "scopes": row.scopes})
        return row, token

    def check(self, bearer: str) -> tuple[User | None, ApiToken]:
        """The user and row behind a token; :class:`AuthError` if it does not work now."""
        now = self._clock.now()
        rules = self._settings.current()
        with self._store.reading() as s:
            row = s.scalars(select(ApiToken).where(ApiToken.token_hash == digest(bearer))).first()
            user = s.get(User, row.user_id) if row is not None else None
        if row is None or row.revoked:
            raise AuthError("API token not found or revoked", remedy="create a new token")
        ends = row.expires_at or row.created_at + dt.timedelta(days=rules.token_max_days)
        if now >= ends:
            raise AuthError("API token expired", remedy="create a new token")
        last = row.last_used_at or row.created_at
        if now - last > dt.timedelta(days=rules.token_idle_days):
            raise AuthError(f"API token unused for more than {rules.token_idle_days} days",
                            remedy="create a new token")
        if (now - last).total_seconds() >= TOUCH_S:
            self._touch(row.id, now)
        return user, row

    def _touch(self, token_id: int, now: dt.datetime) -> None:
        try:
            with self._store.session() as s:
                s.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
        except OperationalError:
            pass  # a busy store: the next call records the use

    def list(self, user_id: int) -> list[ApiToken]:
        with self._store.reading() as s:
            stmt = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
            return list(s.scalars(stmt).all())

    def revoke(self, principal: Principal, token_id: int) -> None:
        with self._store.session() as s:
            row = s.get(ApiToken, token_id)
            if row is None or (row.user_id != principal.user_id and principal.role != "admin"):
                raise NotFound(f"API token {token_id} does not exist")
            row.revoked = True
            self._audit.append_in(s, principal.username, "auth.token.revoke", str(token_id))


def revoke_all_in(s: Session, user_id: int) -> None:
    """Revoke every session and API token of ``user_id`` in the caller's transaction."""
    s.execute(update(UserSession).where(UserSession.user_id == user_id).values(revoked=True))
    s.execute(update(ApiToken).where(ApiToken.user_id == user_id).values(revoked=True))

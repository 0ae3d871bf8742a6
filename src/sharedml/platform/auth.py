"""Users and access (9.1, 9.2): passwords, TOTP, sessions, API tokens, login throttling.

1. Passwords are hashed with argon2id (``argon2-cffi``); an unknown user costs
   the same hash as a known one.
2. A user enrolled in TOTP (RFC 6238, SHA-1, 6 digits, 30 s) must give a code
   (two factors, 9.1-3);
   the secret is sealed at rest with the platform key (``keys.py``). A code is
   accepted once: the accepted time step is remembered and no step at or
   before it is accepted again (replay protection). One step of clock skew
   either way is tolerated.
3. A successful login opens a session: a random bearer token (``sms_...``)
   of which only the SHA-256 is stored. A session ends after
   ``session_idle_minutes`` without a request (9.2-2, 30 by default; its last
   use is written at most every 15 s, so it may end up to 15 s early), after
   ``session_max_hours`` in any case, at logout, or when the user's password
   changes. Time comes from the injected :class:`~sharedml.platform.clock.Clock`.
4. API tokens (``smt_...``) are for scripts: minted from a session, expiring,
   idle-limited, scoped and revocable (:mod:`sharedml.platform.tokens` states
   the rules).
5. Failed logins slow down the client that makes them, never lock the
   account; every refusal reads the same for known and unknown names
   (:mod:`sharedml.platform.login_guard`). All limits are runtime settings.

Every login, failed or not, is written to the audit log (without secrets).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from sharedml.errors import AuthError, ConfigError
from sharedml.platform.audit import AuditLog
from sharedml.platform.clock import Clock
from sharedml.platform.errors import NotFound
from sharedml.platform.keys import SecretBox
from sharedml.platform.login_guard import LoginGuard
from sharedml.platform.runtime import SettingsService
from sharedml.platform.store import Store
from sharedml.platform.store.models import ROLES, ApiToken, User, UserSession
from sharedml.platform.tokens import TOKEN_PREFIX, Tokens

SESSION_PREFIX = "sms_"
#: A session's ``last_seen`` is written at most this often.
SESSION_TOUCH_S = 15.0
TOTP_STEP = 30
TOTP_DIGITS = 6
TOTP_ISSUER = "sharedml"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user behind a session or an API token."""

    user_id: int
    username: str
    role: str
    via: str  # "session" | "token" | "cli"
    credential_id: int
    #: The organisation the user acts for (``None``: the operator's own staff).
    party: str | None = None
    #: What an API token may do (``tokens.allows``); ``*`` for sessions.
    scopes: tuple[str, ...] = ("*",)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Totp:
    """RFC 6238 codes from ``cryptography``; steps are counted from the epoch."""

    @staticmethod
    def new_secret() -> bytes:
        return secrets.token_bytes(20)

    @staticmethod
    def _totp(secret: bytes) -> TOTP:
        return TOTP(secret, TOTP_DIGITS, SHA1(), TOTP_STEP, enforce_key_length=False)

    @classmethod
    def code(cls, secret: bytes, when: dt.datetime) -> str:
        return cls._totp(secret).generate(int(when.timestamp())).decode("ascii")

    @classmethod
    def match(cls, secret: bytes, code: str, when: dt.datetime, last_step: int) -> int | None:
        """The time step ``code`` belongs to, if it is fresh (later than ``last_step``)."""
        now_step = int(when.timestamp()) // TOTP_STEP
        totp = cls._totp(secret)
        for step in (now_step, now_step - 1, now_step + 1):
            if step <= last_step:
                continue
            expected = totp.generate(step * TOTP_STEP).decode("ascii")
            if hmac.compare_digest(expected, code):
                return step
        return None

    @classmethod
    def uri(cls, secret: bytes, username: str) -> str:
        return cls._totp(secret).get_provisioning_uri(username, TOTP_ISSUER)


class Authenticator:
    """Logins, sessions and tokens against the store."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        box: SecretBox,
        settings: SettingsService,
        audit: AuditLog,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._store = store
        self._clock = clock
        self._box = box
        self._settings = settings
        self._audit = audit
        self.guard = LoginGuard(clock)
        self.tokens = Tokens(store, clock, settings, audit)

    # --- users -----------------------------------------------------------------

    @functools.cached_property
    def _dummy_hash(self) -> str:
        """Checked against when the user is unknown, so that costs as much as a real check."""
        return self._hasher.hash(secrets.token_urlsafe(16))

    def hash_password(self, password: str) -> str:
        """argon2id; the cost parameters are the hasher's (argon2-cffi's defaults in production)."""
        if len(password) < 8:
            raise ConfigError("a password needs at least 8 characters")
        return self._hasher.hash(password)

    def check_password(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def new_user(
        self, username: str, password: str, role: str, *, totp: bool = True,
        party: str | None = None,
    ) -> tuple[User, str | None]:
        """A new user, not yet stored (:meth:`add_user`), and (once, never again) the
        TOTP provisioning URI if enrolled. The password is hashed here, outside any
        transaction (argon2 takes a while)."""
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}", remedy=f"use one of {list(ROLES)}")
        secret = Totp.new_secret() if totp else None
        user = User(
            username=username,
            password_hash=self.hash_password(password),
            role=role,
            totp_secret_enc=self._seal(username, secret) if secret else None,
            created_at=self._clock.now(),
            party=party,
        )
        return user, Totp.uri(secret, username) if secret else None

    @staticmethod
    def add_user(s: Session, user: User) -> None:
        """Store a :meth:`new_user` in the caller's transaction (which audits it)."""
        if s.scalar(select(User.id).where(User.username == user.username)) is not None:
            from sharedml.platform.errors import Conflict

            raise Conflict(f"user {user.username!r} already exists")
        s.add(user)
        s.flush()

    def totp_secret(self, user: User) -> bytes | None:
        if user.totp_secret_enc is None:
            return None
        return self._box.open(user.totp_secret_enc, self._aad(user.username))

    def reset_totp(self, s: Session, user_id: int) -> str:
        """Enrol (or re-enrol) a user in TOTP, in the caller's transaction (which audits
        it); returns the provisioning URI once."""
        secret = Totp.new_secret()
        username = self.store_totp(s, user_id, secret)
        return Totp.uri(secret, username)

    def store_totp(self, s: Session, user_id: int, secret: bytes, last_step: int = 0) -> str:
        """Make ``secret`` the user's second factor (sealed), in the caller's transaction;
        codes up to ``last_step`` are spent. Returns the user's name."""
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"user {user_id} does not exist")
        user.totp_secret_enc = self._seal(user.username, secret)
        user.totp_last_step = last_step
        return user.username

    def _aad(self, username: str) -> bytes:
        return f"sharedml/totp/{username}".encode()

    def _seal(self, username: str, secret: bytes) -> bytes:
        return self._box.seal(secret, self._aad(username))

    # --- login -----------------------------------------------------------------

    def login(
        self, username: str, password: str, totp_code: str | None, client: str = ""
    ) -> tuple[str, Principal]:
        """Check password (and TOTP), then open a session; returns its bearer token."""
        rules = self._settings.current()
        self.guard.before(username, client, rules.login_rate_per_minute)
        now = self._clock.now()
        with self._store.session() as s:
            user = s.scalars(select(User).where(User.username == username)).first()
            if user is None or user.disabled:
                self.check_password(self._dummy_hash, password)
                failure = "unknown or disabled user"
            elif user.locked_until is not None and user.locked_until > now:
                self.check_password(self._dummy_hash, password)
                failure = "account locked by an administrator"
            else:
                failure = self._check_factors(user, password, totp_code, now)
                if not failure:
                    principal, token = self._open_session(s, user, now, rules.session_max_hours)
                    self._audit.append_in(s, username, "auth.login", username,
                                          detail={"client": client})
        if failure:
            slowed = self.guard.failed(username, client, rules.lockout_threshold,
                                       rules.lockout_minutes)
            self._audit.append(
                username, "auth.login", username, outcome="denied",
                detail={"reason": failure + ("; client backs off" if slowed else ""),
                        "client": client},
            )
            raise AuthError("invalid username, password or TOTP code")
        self.guard.succeeded(username, client)
        return token, principal

    def _open_session(
        self, s: Any, user: User, now: dt.datetime, max_hours: int
    ) -> tuple[Principal, str]:
        user.failed_attempts = 0
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        session = UserSession(user_id=user.id, token_hash=_digest(token), created_at=now,
                              last_seen=now, expires_at=now + dt.timedelta(hours=max_hours))
        s.add(session)
        s.flush()
        return Principal(user.id, user.username, user.role, "session", session.id,
                         user.party), token

    def _check_factors(
        self, user: User, password: str, totp_code: str | None, now: dt.datetime
    ) -> str:
        if not self.check_password(user.password_hash, password):
            return "wrong password"
        secret = self.totp_secret(user)
        if secret is None:
            return ""
        if not totp_code:
            return "TOTP code missing"
        step = Totp.match(secret, totp_code.strip(), now, user.totp_last_step)
        if step is None:
            return "wrong or replayed TOTP code"
        user.totp_last_step = step
        return ""

    def logout(self, principal: Principal) -> None:
        with self._store.session() as s:
            if principal.via == "session":
                row = s.get(UserSession, principal.credential_id)
                if row is not None:
                    row.revoked = True
            self._audit.append_in(s, principal.username, "auth.logout", principal.username)

    # --- bearer tokens -----------------------------------------------------------

    def authenticate(self, bearer: str) -> Principal:
        """The principal behind a session or API token; AuthError if none is valid."""
        if bearer.startswith(SESSION_PREFIX):
            return self._from_session(bearer)
        if bearer.startswith(TOKEN_PREFIX):
            return self._from_token(bearer)
        raise AuthError("not a sharedml session or API token", remedy="log in again")

    def _from_session(self, bearer: str) -> Principal:
        now = self._clock.now()
        idle = dt.timedelta(minutes=self._settings.current().session_idle_minutes)
        with self._store.reading() as s:  # no write lock for the check itself
            row = s.scalars(
                select(UserSession).where(UserSession.token_hash == _digest(bearer))
            ).first()
            user = s.get(User, row.user_id) if row is not None else None
        if row is None or row.revoked:
            raise AuthError("session not found or logged out", remedy="log in again")
        if now - row.last_seen > idle or now >= row.expires_at:
            self._write_session(row.id, revoked=True)
            raise AuthError("session expired", remedy="log in again")
        if (now - row.last_seen).total_seconds() >= SESSION_TOUCH_S:
            self._write_session(row.id, last_seen=now)
        return self._principal(user, "session", row.id)

    def _write_session(self, session_id: int, **values: Any) -> None:
        try:
            with self._store.session() as s:
                s.execute(update(UserSession).where(UserSession.id == session_id).values(**values))
        except OperationalError:
            pass  # a busy store: the next request records it

    def _from_token(self, bearer: str) -> Principal:
        user, row = self.tokens.check(bearer)
        return self._principal(user, "token", row.id, tuple(row.scopes.split()))

    @staticmethod
    def _principal(
        user: User | None, via: str, credential_id: int, scopes: tuple[str, ...] = ("*",)
    ) -> Principal:
        if user is None or user.disabled:
            raise AuthError("user disabled", remedy="ask an administrator")
        return Principal(user.id, user.username, user.role, via, credential_id, user.party,
                         scopes)

    def create_token(
        self,
        principal: Principal,
        name: str,
        expires_days: int | None = None,
        scopes: list[str] | None = None,
    ) -> tuple[ApiToken, str]:
        return self.tokens.create(principal, name, expires_days, scopes)

    def list_tokens(self, user_id: int) -> list[ApiToken]:
        return self.tokens.list(user_id)

    def revoke_token(self, principal: Principal, token_id: int) -> None:
        self.tokens.revoke(principal, token_id)

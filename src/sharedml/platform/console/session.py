"""The console's login state: the API's own sessions, carried in a cookie, and CSRF tokens.

1. Logging in calls :meth:`Authenticator.login` — the same password, TOTP,
   lock-out and rate-limit rules as ``POST /api/v1/auth/login`` — and puts the
   session's bearer token (``sms_...``) in an HttpOnly, SameSite=Strict cookie,
   marked Secure (and ``__Host-`` prefixed) when the platform serves HTTPS.
   Every request re-authenticates it with :meth:`Authenticator.authenticate`,
   so the idle expiry (``session_idle_minutes``, 30 by default), the absolute
   lifetime and logout are the API's; an expired session sends the browser back
   to the login page.
2. Every state-changing request (POST) carries a CSRF token, in the form field
   ``csrf`` or the header ``X-CSRF-Token`` (htmx sends it from the body's
   ``hx-headers``): ``HMAC-SHA256(key, anchor)``, where the anchor is the
   session token or, before login, a random pre-login cookie. The key is drawn
   when the console starts. A POST without a matching token is refused (403)
   and audited, before any handler runs.
3. When the operator requires TOTP (runtime setting ``require_totp``), a user
   without it is sent to the enrolment page and may do nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

from sharedml.errors import AuthError, PolicyDenied
from sharedml.platform.auth import Principal
from sharedml.platform.service import Platform

PRE_COOKIE = "sharedml_pre"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class LoginRequired(AuthError):
    """No console session, or it ended: the browser goes to the login page."""


class EnrolRequired(AuthError):
    """The operator requires TOTP and this user has none yet."""


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_name(request: Request) -> str:
    """``__Host-`` cookies must be Secure, host-only and for path ``/``: HTTPS only."""
    return "__Host-sharedml_session" if secure(request) else "sharedml_session"


@dataclass(frozen=True)
class Csrf:
    """HMAC tokens bound to the session (or pre-login) cookie."""

    key: bytes

    @classmethod
    def new(cls) -> Csrf:
        return cls(secrets.token_bytes(32))

    def token(self, anchor: str) -> str:
        return hmac.new(self.key, anchor.encode("utf-8"), hashlib.sha256).hexdigest()

    def anchor(self, request: Request) -> str | None:
        return request.cookies.get(cookie_name(request)) or request.cookies.get(PRE_COOKIE)

    def for_request(self, request: Request) -> str:
        anchor = self.anchor(request) or getattr(request.state, "pre_anchor", None) or ""
        return self.token(str(anchor))

    def check(self, request: Request, sent: str | None) -> None:
        anchor = self.anchor(request)
        if not anchor or not sent or not hmac.compare_digest(self.token(anchor), sent):
            raise PolicyDenied(
                "the form carries no valid CSRF token",
                remedy="reload the page and submit the form again",
            )


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name, value, httponly=True, samesite="strict", secure=secure(request), path="/"
    )


def ensure_pre_cookie(request: Request, response: Response) -> None:
    """A random pre-login anchor for the login form's CSRF token, set once per browser."""
    if request.cookies.get(PRE_COOKIE):
        return
    value = getattr(request.state, "pre_anchor", None) or secrets.token_urlsafe(24)
    set_cookie(request, response, PRE_COOKIE, value)


def authenticated(request: Request) -> Principal:
    """The logged-in user behind the session cookie, re-checked by the platform's authenticator."""
    platform: Platform = request.app.state.platform
    token = request.cookies.get(cookie_name(request))
    if not token:
        raise LoginRequired("not logged in", remedy="log in")
    try:
        who = platform.auth.authenticate(token)
    except AuthError as exc:
        raise LoginRequired(exc.message, remedy="log in again") from None
    if who.via != "session":
        raise LoginRequired("the console takes sessions only", remedy="log in")
    request.state.principal = who
    request.state.locale = platform.users.get(who.user_id).locale
    return who


def principal(request: Request) -> Principal:
    """:func:`authenticated`, and enrolled in TOTP when the operator requires it."""
    who = authenticated(request)
    platform: Platform = request.app.state.platform
    if platform.settings.current().require_totp and not _enrolled(platform, who):
        raise EnrolRequired("this platform requires a TOTP second factor", remedy="enrol")
    return who


def _enrolled(platform: Platform, who: Principal) -> bool:
    return platform.users.get(who.user_id).totp_secret_enc is not None

"""The exception tree mapped to HTTP, once (STYLE.md 12).

ConfigError/DataError 422, NotFound 404, Conflict 409, AuthError 401,
LoginThrottled 429, PolicyDenied 403 (and audited as ``access.denied``);
database errors caused by a value (too large, not encodable) 422, integrity
clashes 409; a busy database (SQLite's lock not granted within its busy
timeout, a PostgreSQL lock or serialization failure, no pooled connection
free) 503 with ``Retry-After`` — the request changed nothing and may be sent
again (issue 14 item 3: it was a 422 "a value cannot be stored"). A request
that does not fit its schema is a 422 naming the fields and what is wrong —
never the value sent (a password, a whole spec). The body is always a
:class:`~sharedml.platform.api.schemas.Problem`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from sharedml.components.spec_limits import short
from sharedml.errors import AuthError, ConfigError, DataError, PolicyDenied, SharedMLError
from sharedml.platform.errors import Conflict, LoginThrottled, NotFound

STATUS: list[tuple[type[SharedMLError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (LoginThrottled, 429),
    (AuthError, 401),
    (PolicyDenied, 403),
    (ConfigError, 422),
    (DataError, 422),
]


#: Seconds a client waits before sending again a request refused as busy (503).
RETRY_AFTER_S = 1


def _problem(status: int, exc: Exception, remedy: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    body = {
        "error": type(exc).__name__,
        "detail": getattr(exc, "message", str(exc)),
        "remedy": remedy,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def audit_denied(request: Request, exc: PolicyDenied, **detail: str) -> None:
    """A refused request, in the audit log as ``access.denied`` (the API's and the console's)."""
    principal = getattr(request.state, "principal", None)
    request.app.state.platform.audit.append(
        principal.username if principal else "anonymous",
        "access.denied",
        f"{request.method} {request.url.path}",
        outcome="denied",
        detail={"reason": exc.message, **detail},
    )


def install(app: FastAPI) -> None:
    async def sharedml_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SharedMLError)
        status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
        if isinstance(exc, PolicyDenied):
            audit_denied(request, exc)
        return _problem(status, exc, exc.remedy)

    async def integrity_error(request: Request, exc: Exception) -> JSONResponse:
        return _problem(409, ConfigError("the change clashes with an existing record"))

    async def statement_error(request: Request, exc: Exception) -> JSONResponse:
        return _problem(422, ConfigError("a value cannot be stored (too large or not encodable)"))

    async def store_busy(request: Request, exc: Exception) -> JSONResponse:
        return _problem(
            503,
            StoreBusy("the platform's database is busy; nothing was changed"),
            remedy=f"send the request again after {RETRY_AFTER_S} s",
        )

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _problem(422, ConfigError(validation_summary(exc.errors())),
                        remedy="see the operation's schema at /api/v1/openapi.json")

    app.add_exception_handler(SharedMLError, sharedml_error)
    app.add_exception_handler(IntegrityError, integrity_error)
    app.add_exception_handler(StatementError, statement_error)
    app.add_exception_handler(OperationalError, store_busy)
    app.add_exception_handler(PoolTimeout, store_busy)
    app.add_exception_handler(RequestValidationError, invalid_request)


class StoreBusy(SharedMLError):
    """The store could not be written in time (locked or out of connections)."""


def validation_summary(errors: Sequence[Any], most: int = 5) -> str:
    """``invalid request: body.password: Field required; ...`` — field paths and
    messages only; a value sent is never repeated (it may be a password)."""
    parts = []
    for err in list(errors)[:most]:
        where = ".".join(short(p, 32) for p in err.get("loc", ()))
        parts.append(f"{where}: {short(err.get('msg', 'invalid'), 200)}")
    more = f" (and {len(errors) - most} more)" if len(errors) > most else ""
    return "invalid request: " + "; ".join(parts) + more

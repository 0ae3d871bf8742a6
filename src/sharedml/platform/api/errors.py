"""The exception tree mapped to HTTP, once (STYLE.md 12).

ConfigError/DataError 422, NotFound 404, Conflict 409, AuthError 401,
LoginThrottled 429, PolicyDenied 403 (and audited as ``access.denied``);
database errors caused by a value (too large, not encodable) 422, integrity
clashes 409. The body is always a :class:`~sharedml.platform.api.schemas.Problem`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, StatementError

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


def _problem(status: int, exc: Exception, remedy: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
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

    app.add_exception_handler(SharedMLError, sharedml_error)
    app.add_exception_handler(IntegrityError, integrity_error)
    app.add_exception_handler(StatementError, statement_error)

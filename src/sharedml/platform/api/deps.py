"""FastAPI dependencies: the platform, the caller, and the access checks that wrap every route.

Every route but login and the OpenAPI document declares one of these, so auth
and access are enforced around the operation, not inside it (STYLE.md 13);
``tests/platform/test_api_access.py`` checks that no route is left bare.

For route modules (the job routes too)::

    from sharedml.platform.api.deps import get_platform, require, require_resource

    @router.post("")
    def submit(body: ..., who: Principal = Depends(require("jobs.submit")),
               platform: Platform = Depends(get_platform)): ...

- :func:`get_platform` — the :class:`~sharedml.platform.service.Platform`
  (store, clock, audit, settings, approvals, access, ...).
- :func:`get_scheduler` — the job :class:`~sharedml.platform.scheduler.Scheduler`
  (``app.state.scheduler``), wired to approvals, audit and runtime settings.
- :func:`current_principal` — the authenticated caller (session or API token);
  401 if none or expired.
- :func:`require` ``(operation)`` — the caller, if their role may attempt the
  operation (``access.OPERATIONS``: ``jobs.submit``, ``jobs.read``,
  ``jobs.cancel``, ...); 403 otherwise.
- :func:`require_resource` ``(operation, resource, permission, param)`` — as
  ``require`` and also a grant of at least ``permission`` on the project or
  dataset whose id is the path parameter ``param``.
- Per-job checks (a job's author, project members, admins):
  ``platform.access.require_job(principal, job, "read" | "use")``; before
  storing a spec: ``platform.jobs.check_submit(principal, spec_json,
  project_id)``; the scheduler's ``submit`` then asks the owners for approval
  in the transaction that stores the job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sharedml.errors import AuthError
from sharedml.platform.access import check_role
from sharedml.platform.auth import Principal
from sharedml.platform.login_guard import client_address
from sharedml.platform.service import Platform

bearer = HTTPBearer(auto_error=False, description="a session token (login) or an API token")


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def client_of(request: Request) -> str:
    """The caller's address: the TCP peer, or ``X-Forwarded-For`` only when the peer is
    one of the platform's configured proxies (``--trusted-proxy``; issue 14 item 6)."""
    peer = request.client.host if request.client else ""
    trusted = getattr(request.app.state, "trusted_proxies", ())
    return client_address(peer, request.headers.get("x-forwarded-for"), trusted)


def get_scheduler(request: Request) -> Any:
    return request.app.state.scheduler


def current_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    platform: Platform = Depends(get_platform),
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("not logged in", remedy="send 'Authorization: Bearer <token>'")
    principal = platform.auth.authenticate(credentials.credentials)
    request.state.principal = principal
    return principal


def require(operation: str) -> Callable[..., Principal]:
    """A dependency: the caller, if their role may attempt ``operation``."""

    def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        check_role(principal, operation)
        return principal

    dependency.__name__ = f"require_{operation.replace('.', '_')}"
    return dependency


def require_resource(
    operation: str, resource: str, permission: str, param: str
) -> Callable[..., Principal]:
    """A dependency: ``require(operation)`` plus ``permission`` on the resource named by ``param``."""
    role_check = require(operation)

    def dependency(
        request: Request,
        principal: Principal = Depends(role_check),
        platform: Platform = Depends(get_platform),
    ) -> Principal:
        raw = request.path_params.get(param)
        text = str(raw) if raw is not None else ""
        resource_id = int(text) if text.isdigit() and len(text) < 10 else -1
        platform.access.require(principal, resource, resource_id, permission)
        return principal

    dependency.__name__ = f"require_{resource}_{permission}"
    return dependency


__all__ = ["client_of", "current_principal", "get_platform", "get_scheduler", "require", "require_resource"]

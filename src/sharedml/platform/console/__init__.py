"""The web console (8.6-5): the platform's graphical management, served by the platform itself.

Server-rendered pages (FastAPI + Jinja2) with htmx for the parts that move
and Chart.js for the ROC/KS charts, all under ``/console``; ``/`` redirects
there. Every script, style sheet and font is vendored in ``static/`` and ships
in the wheel (``static/vendor/VENDORED.md``: versions, sources, licences), so
the console and the OpenAPI docs page (``/api/v1/docs``, Swagger UI) work on a
machine without internet. No JavaScript build step.

Pages: login (password + TOTP) and TOTP enrolment (``pages_auth``); home,
nodes, datasets, approvals (``pages_data``); jobs, the builder and a job's
page (``pages_jobs``, ``builder``, ``job_view``); audit log, users and grants,
settings (``pages_admin``); changes to users, roles and grants (``pages_people``); model versions and
aliases of the registry (``pages_models``).

Security model — the console is another face of the REST API, not a second
set of rules:

1. Sessions are the API's (``session.py``): the login form calls the login
   endpoint, the cookie carries the session token, every request
   re-authenticates it (30-minute idle expiry, logout, lock-out).
2. Every page and form calls the REST handler it mirrors through
   :func:`mirror.call`, which runs that handler's own access dependencies
   with the console's principal; refusals render a 403 page and are audited
   as ``access.denied``; changes are audited by the services, as over the API.
3. Every POST carries a CSRF token bound to the session; cookies are HttpOnly,
   SameSite=Strict, Secure under HTTPS; the Content-Security-Policy allows
   same-origin scripts and styles only (no inline script anywhere).
4. Pages show metadata, states, public metrics and charts — never rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from sharedml.platform.console.session import Csrf
from sharedml.platform.console.web import CSP, DOCS_CSP, ENV, HERE, PREFIX, SECURITY_HEADERS

DOCS_PATH = "/api/v1/docs"


@dataclass
class Console:
    """Per-app console state: the CSRF key."""

    csrf: Csrf


def mount(app: FastAPI) -> None:
    """Serve the console, its static files and the offline API docs on ``app``."""
    from sharedml.platform.console import (
        pages_admin,
        pages_auth,
        pages_data,
        pages_jobs,
        pages_models,
        pages_people,
    )

    app.state.console = Console(Csrf.new())
    for module in (pages_auth, pages_data, pages_jobs, pages_admin, pages_people, pages_models):
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    def docs(request: Request) -> Response:
        """Swagger UI from the vendored bundle (``static/vendor/swagger-ui``); a page, not an
        API operation, so a plain route like FastAPI's own docs route."""
        page = ENV.get_template("docs.html").render(prefix=PREFIX, spec=app.openapi_url)
        return HTMLResponse(page)

    app.add_route(DOCS_PATH, docs, methods=["GET"], include_in_schema=False)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        path = request.url.path
        if path.startswith(PREFIX) or path == DOCS_PATH:
            response.headers["Content-Security-Policy"] = DOCS_CSP if path == DOCS_PATH else CSP
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            if path.startswith(f"{PREFIX}/static/"):
                response.headers["Cache-Control"] = "public, max-age=3600"
            if request.url.scheme == "https":
                response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response


__all__ = ["Console", "mount"]

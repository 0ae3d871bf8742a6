"""Rendering: the Jinja2 templates, the page context, the security headers, the error pages.

Templates autoescape everything; no page carries an inline script or style,
so the Content-Security-Policy allows scripts, styles and fetches from the
platform's own origin only (the vendored assets under ``static/``). Data a
script needs (chart points) travels in ``data-`` attributes or a
``<script type="application/json">`` block, which the browser never runs.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from sharedml.errors import AuthError, ConfigError, DataError, PolicyDenied, SharedMLError
from sharedml.platform.console import i18n
from sharedml.platform.errors import Conflict, LoginThrottled, NotFound

HERE = Path(__file__).resolve().parent
PREFIX = "/console"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
#: Swagger UI styles its widgets with style attributes; scripts stay same-origin only.
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["tojson_compact"] = lambda v: json.dumps(v, separators=(",", ":"), default=str)
    env.globals["prefix"] = PREFIX
    env.globals["languages"] = i18n.LANGUAGES
    return env


ENV = _environment()


def language(request: Request) -> str:
    stored = getattr(request.state, "locale", None)
    return i18n.choose(stored, request.headers.get("accept-language"))


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    """A page (or an htmx fragment) in the caller's language, with its CSRF token."""
    lang = language(request)
    console = request.app.state.console
    page = ENV.get_template(template).render(
        request=request,
        _=i18n.translator(lang),
        lang=lang,
        who=getattr(request.state, "principal", None),
        csrf=console.csrf.for_request(request),
        **ctx,
    )
    return HTMLResponse(page, status_code=status)


STATUS: list[tuple[type[SharedMLError], int, str]] = [
    (NotFound, 404, "Not found"),
    (Conflict, 409, "Invalid input"),
    (LoginThrottled, 429, "Invalid input"),
    (PolicyDenied, 403, "Forbidden"),
    (ConfigError, 422, "Invalid input"),
    (DataError, 422, "Invalid input"),
]


def error_page(request: Request, exc: SharedMLError) -> Response:
    """The HTML answer to an error raised under ``/console``; never a stack trace."""
    from sharedml.platform.console.session import EnrolRequired, cookie_name

    if isinstance(exc, EnrolRequired):
        return redirect(request, f"{PREFIX}/totp")
    if isinstance(exc, AuthError):  # log in (again), then back to the page asked for
        asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        query = ["expired=1"] if request.cookies.get(cookie_name(request)) else []  # it ended
        if request.method == "GET" and local(asked):
            query.append(f"next={quote(asked, safe='')}")
        return redirect(request, f"{PREFIX}/login" + (f"?{'&'.join(query)}" if query else ""))
    status, title = next(((c, t) for cls, c, t in STATUS if isinstance(exc, cls)), (500, "Error"))
    if isinstance(exc, PolicyDenied):
        from sharedml.platform.api.errors import audit_denied

        audit_denied(request, exc, via="console")
    return render(request, "error.html", status=status, title=title, error=exc)


def local(url: str) -> bool:
    """Only redirect within the console (no open redirect)."""
    return url.startswith(PREFIX + "/") and "//" not in url[1:] and "\\" not in url


def redirect(request: Request, url: str) -> Response:
    """A redirect that htmx follows as a full page load (``HX-Redirect``)."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)

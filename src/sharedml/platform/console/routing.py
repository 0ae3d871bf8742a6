"""The console's router: HTML error pages, the CSRF guard and form parsing on every route."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute

from sharedml.errors import ConfigError, SharedMLError
from sharedml.platform.console import session
from sharedml.platform.console.web import PREFIX, error_page

MAX_FORM = 1 << 20

Form = dict[str, list[str]]


class ConsoleRoute(APIRoute):
    """Errors under ``/console`` answer with an HTML page (or a login redirect), not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SharedMLError as exc:
                return error_page(request, exc)

        return route


async def form_data(request: Request) -> Form:
    """The posted ``application/x-www-form-urlencoded`` fields (at most 1 MiB)."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise ConfigError("the form is larger than 1 MiB")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=5000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"the form cannot be read: {exc}") from None


async def csrf_guard(request: Request) -> None:
    """Every POST carries the CSRF token of this browser's session (session.py, step 2)."""
    if request.method != "POST":
        return
    sent = request.headers.get(session.CSRF_HEADER)
    if sent is None:
        sent = next(iter((await form_data(request)).get(session.CSRF_FIELD, [])), None)
    request.app.state.console.csrf.check(request, sent)


def field(form: Form, name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0] if values else default


def make_router() -> APIRouter:
    return APIRouter(
        prefix=PREFIX,
        route_class=ConsoleRoute,
        dependencies=[Depends(csrf_guard)],
        include_in_schema=False,
    )

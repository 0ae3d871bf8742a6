"""Every console action is a REST endpoint, called as the logged-in user.

The console keeps no access rules of its own. :func:`call` takes the REST
handler a page or form mirrors (e.g. ``routes_data.decide_approval``), runs the
access dependencies that handler declares — ``require("approvals.decide")``,
``require_resource("datasets.read", "dataset", "read", "dataset_id")`` — with
the console's principal in place of the bearer token, and then calls the
handler itself. So a page shows what the endpoint would return and a form does
what the endpoint would do, refusals and audit entries included; a change to
the API's rules changes the console's at once.

A ``require_resource`` check reads its resource id from the request's path
parameters, so a console route that mirrors one names its path parameter as
the endpoint does (``/console/datasets/{dataset_id}``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.params import Depends
from fastapi.routing import APIRoute
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from sharedml.errors import AuthError
from sharedml.platform.api.deps import current_principal, get_platform, get_scheduler
from sharedml.platform.auth import Principal
from sharedml.platform.service import Platform


def _scheduler(request: Request) -> Any:
    return request.app.state.scheduler


def _run_guard(
    guard: Callable[..., Any], request: Request, principal: Principal, platform: Platform
) -> Any:
    """One access dependency of the endpoint and the ones it depends on, as FastAPI would
    run them, with this principal where the API reads the bearer token."""
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(guard).parameters.items():
        dep = getattr(param.default, "dependency", None)
        if dep is current_principal:
            kwargs[name] = principal
        elif dep is get_platform:
            kwargs[name] = platform
        elif dep is not None:
            kwargs[name] = _run_guard(dep, request, principal, platform)
        elif param.annotation in (Request, "Request"):
            kwargs[name] = request
        else:
            raise TypeError(f"{guard.__name__}: cannot supply {name!r}")
    return guard(**kwargs)


def call(
    endpoint: Callable[..., Any],
    request: Request,
    principal: Principal | None,
    /,
    path_params: dict[str, Any] | None = None,
    **args: Any,
) -> Any:
    """``endpoint(**args)`` after its own access checks, as ``principal``.

    Parameters the caller leaves out take the endpoint's declared default
    (``Query(None)`` is ``None``); the platform and the scheduler are filled in
    as FastAPI would. ``path_params`` are the path the endpoint's resource
    checks read, when the console page's own path does not carry them.
    """
    platform: Platform = request.app.state.platform
    if path_params is not None:
        scope = dict(request.scope)
        scope["path_params"] = {k: str(v) for k, v in path_params.items()}
        request = Request(scope, request.receive)
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(endpoint).parameters.items():
        default = param.default
        if isinstance(default, Depends):
            dep = default.dependency
            if dep is get_platform:
                kwargs[name] = platform
            elif dep is get_scheduler or getattr(dep, "__name__", "") == "get_scheduler":
                kwargs[name] = _scheduler(request)
            elif dep is not None:
                if principal is None:
                    raise AuthError("not logged in", remedy="log in")
                _run_guard(dep, request, principal, platform)
                kwargs[name] = principal
        elif name in args:
            kwargs[name] = args[name]
        elif param.annotation in (Request, "Request"):
            kwargs[name] = request
        elif isinstance(default, FieldInfo):
            if default.default is PydanticUndefined:
                raise TypeError(f"{endpoint.__name__}: the console must pass {name!r}")
            kwargs[name] = default.default
        elif default is not inspect.Parameter.empty:
            kwargs[name] = default
        else:
            raise TypeError(f"{endpoint.__name__}: the console must pass {name!r}")
    unknown = set(args) - set(kwargs)
    if unknown:
        raise TypeError(f"{endpoint.__name__} takes no {sorted(unknown)}")
    return endpoint(**kwargs)


def endpoint(router: APIRouter, name: str) -> Callable[..., Any]:
    """The handler of the route called ``name`` (routes made in a loop have no module name)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.name == name:
            return route.endpoint
    raise LookupError(f"no API route named {name!r}")


def guards(endpoint: Callable[..., Any]) -> list[str]:
    """The names of the access dependencies ``endpoint`` declares (for tests and docs)."""
    out = []
    for param in inspect.signature(endpoint).parameters.values():
        dep = getattr(param.default, "dependency", None)
        if dep is not None and dep is not get_platform and dep.__name__ != "get_scheduler":
            out.append(dep.__name__)
    return out

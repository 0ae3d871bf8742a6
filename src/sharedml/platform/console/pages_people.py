"""Changes to users, roles and grants — each form is the REST call it mirrors:

* ``POST /console/users`` — ``POST /api/v1/users`` (``users.manage``); the new
  user enrols TOTP at first login when the operator requires it;
* ``POST /console/users/{user_id}`` — ``PATCH /api/v1/users/{id}``: role, party,
  disabled;
* ``POST /console/datasets/{dataset_id}/grants`` — ``GET
  /api/v1/users/named/{username}`` then ``PUT /api/v1/datasets/{id}/grants``:
  the dataset's party's owners give a user, named as they log in, ``read``,
  ``use`` or ``manage`` (a data owner may not list users, so the form asks for
  the name rather than offering a list).
"""

from __future__ import annotations

import re

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from sharedml.errors import ConfigError
from sharedml.platform.api import routes_admin, routes_data
from sharedml.platform.api.schemas import NAME, GrantIn, UserIn, UserPatch
from sharedml.platform.auth import Principal
from sharedml.platform.console import session
from sharedml.platform.console.mirror import call, endpoint
from sharedml.platform.console.routing import Form, field, form_data, make_router
from sharedml.platform.console.web import PREFIX, redirect
from sharedml.platform.errors import NotFound

router = make_router()
SET_DATASET_GRANT = endpoint(routes_data.router, "set_dataset_grant")


def _valid(kind: type[UserIn] | type[UserPatch] | type[GrantIn], data: dict[str, object]
           ) -> object:
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "form"
        raise ConfigError(f"{where}: {first['msg']}", remedy="correct the field and send again"
                          ) from None


@router.post("/users")
def create_user(request: Request, form: Form = Depends(form_data),
                who: Principal = Depends(session.principal)) -> Response:
    body = _valid(UserIn, {"username": field(form, "username"), "password": field(form, "password"),
                           "role": field(form, "role"), "party": field(form, "party") or None,
                           "totp": False})
    call(routes_admin.create_user, request, who, body=body)
    return redirect(request, f"{PREFIX}/users")


@router.post("/users/{user_id}")
def update_user(request: Request, user_id: int, form: Form = Depends(form_data),
                who: Principal = Depends(session.principal)) -> Response:
    body = _valid(UserPatch, {"role": field(form, "role") or None,
                              "party": field(form, "party") or None,
                              "disabled": field(form, "disabled") == "on"})
    call(routes_admin.update_user, request, who, body=body, user_id=user_id)
    return redirect(request, f"{PREFIX}/users")


@router.post("/datasets/{dataset_id}/grants")
def grant(request: Request, dataset_id: int, form: Form = Depends(form_data),
          who: Principal = Depends(session.principal)) -> Response:
    body = _valid(GrantIn, {"user_id": _user_named(request, who, field(form, "username")),
                            "permission": field(form, "permission")})
    call(SET_DATASET_GRANT, request, who, body=body, rid=dataset_id)
    return redirect(request, f"{PREFIX}/datasets/{dataset_id}")


def _user_named(request: Request, who: Principal, username: str | None) -> int:
    """The id of the user the grant form names, looked up as ``who`` may (``grants.manage``)."""
    name = (username or "").strip()
    if not re.fullmatch(NAME, name):
        raise ConfigError(f"username: {name[:64]!r} is not a user name",
                          remedy="type the user's name as they log in (letters, digits, . _ @ -)")
    try:
        ref = call(routes_admin.user_named, request, who, username=name)
    except NotFound:
        raise ConfigError(f"username: there is no user {name!r}",
                          remedy="check the spelling; your administrator can tell you a "
                          "colleague's user name") from None
    return int(ref.id)

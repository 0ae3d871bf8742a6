"""``/api/v1/auth``: log in (password + TOTP) for a session, log out, API tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request

from sharedml.platform.api.deps import client_of, get_platform, require
from sharedml.platform.api.schemas import (
    LoginIn,
    LoginOut,
    MePatch,
    TokenCreated,
    TokenIn,
    TokenOut,
    TotpBegun,
    TotpConfirm,
    UserOut,
)
from sharedml.platform.auth import Principal
from sharedml.platform.service import Platform

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def ID() -> Any:  # a fresh Path() per parameter: FastAPI must not share one FieldInfo
    return Path(ge=1, le=2**31 - 1)


@router.post("/login", response_model=LoginOut)
def login(body: LoginIn, request: Request, platform: Platform = Depends(get_platform)) -> LoginOut:
    """Password and (if enrolled) TOTP code for a session token that idles out after 30 minutes."""
    client = client_of(request)
    token, who = platform.auth.login(body.username, body.password, body.totp, client)
    return LoginOut(token=token, username=who.username, role=who.role)


@router.post("/logout", status_code=204)
def logout(
    who: Principal = Depends(require("self")), platform: Platform = Depends(get_platform)
) -> None:
    platform.auth.logout(who)


@router.get("/me", response_model=UserOut)
def me(
    who: Principal = Depends(require("self")), platform: Platform = Depends(get_platform)
) -> UserOut:
    from sharedml.platform.api.routes_admin import user_out

    return user_out(platform.users.get(who.user_id))


@router.patch("/me", response_model=UserOut)
def update_me(
    body: MePatch,
    who: Principal = Depends(require("self")),
    platform: Platform = Depends(get_platform),
) -> UserOut:
    """The caller's own preferences (the console's language)."""
    from sharedml.platform.api.routes_admin import user_out

    return user_out(platform.users.set_locale(who.username, who.user_id, body.locale))


@router.post("/totp", response_model=TotpBegun)
def begin_totp(
    who: Principal = Depends(require("self")), platform: Platform = Depends(get_platform)
) -> TotpBegun:
    """Start self-service TOTP enrolment: a new secret, stored only once confirmed."""
    from sharedml.platform.totp_enrol import TotpEnrolment

    uri, secret, ticket = TotpEnrolment(platform).begin(who)
    return TotpBegun(totp_uri=uri, secret=secret, ticket=ticket)


@router.post("/totp/confirm", status_code=204)
def confirm_totp(
    body: TotpConfirm,
    who: Principal = Depends(require("self")),
    platform: Platform = Depends(get_platform),
) -> None:
    """Finish enrolment with the authenticator app's current code (422 if it does not match)."""
    from sharedml.platform.totp_enrol import TotpEnrolment

    TotpEnrolment(platform).confirm(who, body.ticket, body.code)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(
    who: Principal = Depends(require("self")), platform: Platform = Depends(get_platform)
) -> list[TokenOut]:
    return [TokenOut.model_validate(t) for t in platform.auth.list_tokens(who.user_id)]


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def create_token(
    body: TokenIn,
    who: Principal = Depends(require("self")),
    platform: Platform = Depends(get_platform),
) -> TokenCreated:
    """An API token for scripts; its value is shown once."""
    row, token = platform.auth.create_token(who, body.name, body.expires_days, body.scopes)
    return TokenCreated(**TokenOut.model_validate(row).model_dump(), token=token)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(
    token_id: int = ID(),
    who: Principal = Depends(require("self")),
    platform: Platform = Depends(get_platform),
) -> None:
    platform.auth.revoke_token(who, token_id)

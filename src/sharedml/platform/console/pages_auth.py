"""Login (password + TOTP), logout, self-service TOTP enrolment with a QR code, language."""

from __future__ import annotations

import io

from fastapi import Depends, Request
from fastapi.responses import Response

from sharedml.errors import AuthError
from sharedml.platform.api import routes_auth
from sharedml.platform.api.schemas import LoginIn, MePatch, TotpConfirm
from sharedml.platform.auth import Principal
from sharedml.platform.console import session
from sharedml.platform.console.mirror import call
from sharedml.platform.console.routing import Form, field, form_data, make_router
from sharedml.platform.console.web import PREFIX, local, redirect, render

router = make_router()


@router.get("/login")
def login_page(request: Request, expired: int = 0, next: str = "") -> Response:
    request.state.pre_anchor = request.cookies.get(session.PRE_COOKIE) or _new_anchor()
    message = "Your session ended; log in again." if expired else ""
    response = render(request, "login.html", message=message, next=next if local(next) else "")
    session.ensure_pre_cookie(request, response)
    return response


def _new_anchor() -> str:
    import secrets

    return secrets.token_urlsafe(24)


@router.post("/login")
def login(request: Request, form: Form = Depends(form_data)) -> Response:
    """``POST /api/v1/auth/login`` itself: the same factors, lock-out, rate limit and audit."""
    body = LoginIn(
        username=field(form, "username")[:64] or "-",
        password=field(form, "password")[:1024] or "-",
        totp=field(form, "totp")[:16] or None,
    )
    back = field(form, "next") if local(field(form, "next")) else ""
    try:
        out = call(routes_auth.login, request, None, body=body)
    except AuthError as exc:
        return render(request, "login.html", status=401, message=exc.message, next=back)
    response = redirect(request, back or f"{PREFIX}/")
    session.set_cookie(request, response, session.cookie_name(request), out.token)
    return response


@router.post("/logout")
def logout(request: Request, who: Principal = Depends(session.authenticated)) -> Response:
    call(routes_auth.logout, request, who)
    response = redirect(request, f"{PREFIX}/login")
    response.delete_cookie(session.cookie_name(request), path="/")
    return response


@router.post("/language")
def language(
    request: Request, form: Form = Depends(form_data), who: Principal = Depends(session.principal)
) -> Response:
    """The user's language, stored with the user (``PATCH /api/v1/auth/me``)."""
    call(routes_auth.update_me, request, who, body=MePatch(locale=field(form, "locale")))  # type: ignore[arg-type]
    return redirect(request, request.headers.get("referer") or f"{PREFIX}/")


def qr_svg(uri: str) -> str:
    """The provisioning URI as an SVG QR code (segno; attributes only, no styles)."""
    import segno

    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=5, xmldecl=False, svgns=True,
                                    title="TOTP", dark="#111", light="#fff")
    return out.getvalue().decode("utf-8")


@router.get("/totp")
def totp_page(request: Request, who: Principal = Depends(session.authenticated)) -> Response:
    """A new secret as a QR code; nothing is stored until the code is confirmed."""
    begun = call(routes_auth.begin_totp, request, who)
    return render(request, "totp.html", qr=qr_svg(begun.totp_uri), begun=begun, message="")


@router.post("/totp")
def totp_confirm(
    request: Request,
    form: Form = Depends(form_data),
    who: Principal = Depends(session.authenticated),
) -> Response:
    body = TotpConfirm(ticket=field(form, "ticket")[:512], code=field(form, "code")[:16].ljust(6))
    call(routes_auth.confirm_totp, request, who, body=body)
    return render(request, "totp.html", qr="", begun=None, message="TOTP enrolled.")

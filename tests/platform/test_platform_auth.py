"""Users and access through the REST API (9.1, 9.2): TOTP, replay, idle expiry, tokens, lock-out."""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi.testclient import TestClient
from platform_world import PASSWORD, World, make_world
from sqlalchemy import select

from sharedml.platform.api import create_app
from sharedml.platform.config import PlatformConfig
from sharedml.platform.store.models import User

ME = "/api/v1/auth/me"


def test_password_and_totp_open_a_session(world: World) -> None:
    world.add_user("tess", "analyst", totp=True)
    assert world.login("tess").status_code == 401  # TOTP missing
    r = world.login("tess", world.code("tess"))
    assert r.status_code == 200 and r.json()["role"] == "analyst"
    me = world.call("tess", "GET", ME)
    assert me.status_code == 200 and me.json()["totp_enrolled"] is True


def test_a_wrong_totp_is_refused_and_audited(world: World) -> None:
    world.add_user("tess", "analyst", totp=True)
    good = world.code("tess")
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    r = world.login("tess", wrong)
    assert r.status_code == 401 and "TOTP" in r.json()["detail"]
    assert world.login("tess", world.code("tess", offset_steps=-5)).status_code == 401  # stale
    denied = world.platform.audit.query(action="auth.login", actor="tess")
    assert [e.outcome for e in denied] == ["denied", "denied"]
    assert good not in "".join(e.detail for e in denied)  # no codes in the log


def test_a_replayed_totp_code_is_refused(world: World) -> None:
    world.add_user("tess", "analyst", totp=True)
    code = world.code("tess")
    assert world.login("tess", code).status_code == 200
    world.clock.advance(5)  # same 30 s step
    r = world.login("tess", code)
    assert r.status_code == 401
    world.clock.advance(30)  # next step: a fresh code works, the old one still does not
    assert world.login("tess", code).status_code == 401
    assert world.login("tess", world.code("tess")).status_code == 200


def test_the_totp_secret_is_sealed_at_rest(world: World) -> None:
    world.add_user("tess", "analyst", totp=True)
    secret = world.secrets["tess"]
    with world.platform.store.session() as s:
        stored = s.scalars(select(User).where(User.username == "tess")).one().totp_secret_enc
    assert stored is not None and secret not in stored
    assert base64.b32encode(secret) not in stored


def test_a_session_expires_after_30_minutes_idle(world: World) -> None:
    assert world.call("analyst", "GET", ME).status_code == 200
    world.clock.advance(minutes=29)
    assert world.call("analyst", "GET", ME).status_code == 200  # activity renews it
    world.clock.advance(minutes=29)
    assert world.call("analyst", "GET", ME).status_code == 200
    world.clock.advance(minutes=30, seconds=1)
    r = world.call("analyst", "GET", ME)
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    world.clock.advance(-3600)  # turning the clock back does not revive it
    assert world.call("analyst", "GET", ME).status_code == 401


def test_a_session_token_is_dead_after_logout(world: World) -> None:
    token = world.tokens["analyst"]
    assert world.call("analyst", "POST", "/api/v1/auth/logout").status_code == 204
    r = world.client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_missing_or_forged_credentials_are_401(world: World) -> None:
    assert world.client.get(ME).status_code == 401
    for forged in ("sms_" + "A" * 43, "smt_" + "A" * 43, "garbage", "Basic abc"):
        assert world.client.get(ME, headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_api_tokens_work_past_the_session_idle_limit_and_can_be_revoked(world: World) -> None:
    r = world.call("analyst", "POST", "/api/v1/auth/tokens", json={"name": "ci"})
    assert r.status_code == 201
    token, token_id = r.json()["token"], r.json()["id"]
    h = {"Authorization": f"Bearer {token}"}
    # another user cannot revoke it
    assert world.call("auditor", "DELETE", f"/api/v1/auth/tokens/{token_id}").status_code == 404
    world.clock.advance(hours=5)
    assert world.client.get(ME, headers=h).json()["username"] == "analyst"
    listed = world.client.get("/api/v1/auth/tokens", headers=h).json()
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    assert world.client.delete(f"/api/v1/auth/tokens/{token_id}", headers=h).status_code == 204
    assert world.client.get(ME, headers=h).status_code == 401


def test_expiring_api_token(world: World) -> None:
    r = world.call("analyst", "POST", "/api/v1/auth/tokens", json={"name": "t", "expires_days": 1})
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    assert world.client.get(ME, headers=h).status_code == 200
    world.clock.advance(days=1)
    assert world.client.get(ME, headers=h).status_code == 401


def test_repeated_failures_slow_the_client_not_the_account(world: World) -> None:
    """Five failures make this client wait (429, same for any name); the account is not
    locked (issue 14 item 6: anyone could lock any account)."""
    body = {"username": "analyst", "password": "wrong password"}
    for _ in range(5):
        assert world.client.post("/api/v1/auth/login", json=body).status_code == 401
    r = world.login("analyst")  # right password, but this client waits first
    assert r.status_code == 429 and "locked" not in r.text
    world.clock.advance(seconds=2)
    assert world.login("analyst").status_code == 200
    entries = world.platform.audit.query(action="auth.login", actor="analyst")
    assert any("client backs off" in e.detail for e in entries)


def test_an_admin_unlock_lifts_a_back_off(world: World) -> None:
    body = {"username": "analyst", "password": "wrong password"}
    for _ in range(8):
        world.client.post("/api/v1/auth/login", json=body)
    assert world.login("analyst").status_code == 429
    uid = world.ids["analyst"]
    r = world.call("admin", "PATCH", f"/api/v1/users/{uid}", json={"unlock": True})
    assert r.status_code == 200 and r.json()["locked_until"] is None
    assert world.login("analyst").status_code == 200


def test_login_attempts_are_rate_limited(world: World) -> None:
    world.call("admin", "PATCH", "/api/v1/settings", json={"login_rate_per_minute": 3})
    world.clock.advance(61)  # the world's own logins leave the window
    bad = {"username": "nobody", "password": "whatever1"}
    codes = [world.client.post("/api/v1/auth/login", json=bad).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    world.clock.advance(61)
    assert world.client.post("/api/v1/auth/login", json=bad).status_code == 401


def test_unknown_user_and_wrong_password_look_alike(world: World) -> None:
    a = world.client.post("/api/v1/auth/login", json={"username": "ghost", "password": PASSWORD})
    b = world.client.post("/api/v1/auth/login", json={"username": "analyst", "password": "nope1234"})
    assert a.status_code == b.status_code == 401 and a.json() == b.json()


def test_a_disabled_user_loses_access_at_once(world: World) -> None:
    uid = world.ids["analyst"]
    assert world.call("admin", "PATCH", f"/api/v1/users/{uid}", json={"disabled": True}).status_code == 200
    assert world.call("analyst", "GET", ME).status_code == 401
    assert world.login("analyst").status_code == 401


def test_sessions_survive_a_platform_restart(tmp_path: Path) -> None:
    """Sessions live in the store: a new app over the same data dir honours them."""
    first = make_world(tmp_path)
    token = first.tokens["analyst"]
    app = create_app(PlatformConfig(tmp_path), clock=first.clock)
    r = TestClient(app).get(ME, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["username"] == "analyst"


def test_totp_codes_match_rfc6238_vectors() -> None:
    """RFC 6238 appendix B (SHA-1 secret), last six digits."""
    import datetime as dt

    from sharedml.platform.auth import Totp

    secret = b"12345678901234567890"
    for t, code in ((59, "287082"), (1111111109, "081804"), (1234567890, "005924")):
        assert Totp.code(secret, dt.datetime.fromtimestamp(t, dt.UTC)) == code


def test_production_passwords_use_argon2id(world: World) -> None:
    from sharedml.platform.auth import Authenticator

    auth = Authenticator(
        world.platform.store, world.clock, world.platform.box,
        world.platform.settings, world.platform.audit,
    )  # fmt: skip
    stored = auth.hash_password("a long password")
    assert stored.startswith("$argon2id$") and "m=65536" in stored
    assert auth.check_password(stored, "a long password")
    assert not auth.check_password(stored, "a long passworD")

"""Issue 14 item 6: authentication edges, each a finding of the probe (9.2).

X-Forwarded-For defeated the rate limit and was audited as the client;
anyone could lock any account and "account locked" told names apart; API
tokens never expired, skipped every idle rule and could mint more tokens;
a password change left sessions and tokens valid. One test (XFF) runs
``sharedml platform serve`` as a process, because uvicorn's own proxy
handling was the hole.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from platform_world import World, two_party_datasets

ME = "/api/v1/auth/me"


def _token(world: World, who: str, **body: object) -> httpx.Response:
    return world.call(who, "POST", "/api/v1/auth/tokens", json={"name": "t", **body})


def test_api_tokens_expire_by_default_and_at_most_token_max_days(world: World) -> None:
    assert _token(world, "analyst", expires_days=365).status_code == 422  # > token_max_days
    r = _token(world, "analyst")
    assert r.status_code == 201 and r.json()["expires_at"] is not None, r.text
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    world.clock.advance(days=29)
    assert world.client.get(ME, headers=h).status_code == 200
    world.clock.advance(days=1, seconds=1)
    assert world.client.get(ME, headers=h).status_code == 401


def test_an_unused_token_stops_working_after_token_idle_days(world: World) -> None:
    world.call("admin", "PATCH", "/api/v1/settings", json={"token_idle_days": 2})
    h = {"Authorization": f"Bearer {_token(world, 'analyst', expires_days=60).json()['token']}"}
    world.clock.advance(days=1)
    assert world.client.get(ME, headers=h).status_code == 200
    world.clock.advance(days=2, seconds=1)
    r = world.client.get(ME, headers=h)
    assert r.status_code == 401 and "unused" in r.json()["detail"]


def test_a_token_cannot_mint_tokens(world: World) -> None:
    h = {"Authorization": f"Bearer {_token(world, 'analyst').json()['token']}"}
    r = world.client.post("/api/v1/auth/tokens", json={"name": "child"}, headers=h)
    assert r.status_code == 403


def test_token_scopes_narrow_what_it_may_do(world: World) -> None:
    r = _token(world, "admin", scopes=["jobs.read", "nodes"])
    assert r.status_code == 201 and r.json()["scopes"] == "jobs.read nodes"
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    assert world.client.get("/api/v1/jobs", headers=h).status_code == 200
    assert world.client.get("/api/v1/nodes", headers=h).status_code == 200
    assert world.client.get("/api/v1/users", headers=h).status_code == 403
    assert world.client.get(ME, headers=h).status_code == 200  # "self" always
    assert _token(world, "admin", scopes=["everything"]).status_code == 422


def test_a_password_change_revokes_sessions_and_tokens(world: World) -> None:
    h = {"Authorization": f"Bearer {_token(world, 'analyst').json()['token']}"}
    session = world.h("analyst")
    uid = world.ids["analyst"]
    r = world.call("admin", "PATCH", f"/api/v1/users/{uid}", json={"password": "a new password!"})
    assert r.status_code == 200, r.text
    assert world.client.get(ME, headers=h).status_code == 401
    assert world.client.get(ME, headers=session).status_code == 401


def test_nobody_can_lock_an_account_from_elsewhere(world: World) -> None:
    """An attacker's failures (one address) do not stop the owner (another address)."""
    world.app.state.trusted_proxies = ("testclient",)  # the test client stands for a proxy
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    bad = {"username": "admin", "password": "guess guess"}
    codes = [world.client.post("/api/v1/auth/login", json=bad, headers=attacker).status_code
             for _ in range(12)]
    assert codes[:5] == [401] * 5 and 429 in codes
    ok = world.client.post("/api/v1/auth/login", headers={"X-Forwarded-For": "198.51.100.7"},
                           json={"username": "admin", "password": "correct horse battery"})
    assert ok.status_code == 200, ok.text


def test_known_and_unknown_names_are_refused_alike_even_when_slowed(world: World) -> None:
    answers = {}
    for name in ("analyst", "no-such-user"):
        bad = {"username": name, "password": "wrong wrong"}
        answers[name] = [world.client.post("/api/v1/auth/login", json=bad) for _ in range(7)]
    a, b = answers["analyst"], answers["no-such-user"]
    assert [r.status_code for r in a] == [r.status_code for r in b]
    assert [r.json() for r in a] == [r.json() for r in b]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_x_forwarded_for_does_not_reset_the_rate_limit(tmp_path: Path) -> None:
    env = {**os.environ, "SHAREDML_PLATFORM_DIR": str(tmp_path)}
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sharedml.cli", "platform", "serve",
                             "--port", str(port), "--insecure-http"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/v1/auth/login"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        codes = [
            httpx.post(url, json={"username": "x", "password": "y"}, timeout=30,
                       headers={"X-Forwarded-For": f"10.0.{i}.1"}).status_code
            for i in range(22)
        ]
    finally:
        proc.terminate()
        proc.wait(20)
    assert 429 in codes, codes  # 20 a minute from 127.0.0.1, whatever the header says
    out = subprocess.run([sys.executable, "-m", "sharedml.cli", "audit", "export"], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "10.0." not in out and "127.0.0.1" in out


def test_an_owner_sees_the_steps_on_their_data_and_what_each_reveals(world: World) -> None:
    """The probe: owners approved without seeing what the job does. The approval now lists
    each step that runs on the owner's dataset, who else is in it, and what it reveals."""
    two_party_datasets(world)
    spec = {"name": "j", "parties": {"bank": {"dataset": "customers", "label": "y"},
                                     "shop": {"dataset": "baskets"}},
            "steps": [{"psi": {}}, {"describe": {}}, {"split": {}},
                      {"train": {"model": "logistic_regression", "protocol": "ss"}}]}
    job = world.call("analyst", "POST", "/api/v1/jobs", json={"spec": spec})
    assert job.status_code == 201, job.text
    (approval,) = world.call("shop_owner", "GET", "/api/v1/approvals",
                             params={"job_id": job.json()["id"]}).json()
    about = world.call("shop_owner", "GET", f"/api/v1/approvals/{approval['id']}/spec").json()
    steps = {s["step"]: s for s in about["steps"]}
    assert list(steps) == ["psi", "describe", "split", "train"]
    assert steps["describe"]["with_parties"] == ["bank"]
    assert "row and column counts" in steps["describe"]["reveals"]
    assert steps["train"]["dealer"] == "dealer"  # secret-shared: the dealer takes part
    assert "masked" in steps["train"]["reveals"]  # the SS learner's own statement
    assert all(s["reveals"] for s in about["steps"])

"""Users, roles and grants changed from the console: each form is the REST call it
mirrors, with that call's access rule and audit entry."""

from __future__ import annotations

import html
import re
from pathlib import Path

from platform_world import World, make_world
from test_console_pages import console_login

from sharedml.platform.console.web import PREFIX


def _exists(w: World, name: str) -> bool:
    return name in {u.username for u in w.platform.users.list()}


def _post(w: World, path: str, data: dict[str, str]) -> int:
    page = w.client.get(f"{PREFIX}/")
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token
    r = w.client.post(PREFIX + path, data={"csrf": token.group(1), **data},
                      follow_redirects=False)
    return r.status_code


def test_an_admin_creates_and_changes_a_user_an_analyst_may_not(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    console_login(w, "analyst")
    form = {"username": "carol", "password": "a long password", "role": "analyst", "party": ""}
    assert _post(w, "/users", form) == 403
    assert not _exists(w, "carol")

    console_login(w, "admin")
    assert _post(w, "/users", form) == 303
    carol = w.platform.users.by_name("carol")
    assert carol.role == "analyst"
    assert _post(w, f"/users/{carol.id}", {"role": "data_owner", "party": "bank",
                                           "disabled": "on"}) == 303
    carol = w.platform.users.by_name("carol")
    assert (carol.role, carol.party, carol.disabled) == ("data_owner", "bank", True)
    actions = [e.action for e in w.platform.audit.query(actor="admin", limit=50)]
    assert "user.create" in actions and "user.update" in actions
    # a bad value is named, and nothing changes
    assert _post(w, "/users", {**form, "username": "dave", "password": "short"}) == 422
    assert not _exists(w, "dave")


def test_a_data_owner_grants_use_of_a_dataset_of_their_party(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    r = w.call("data_owner", "POST", "/api/v1/datasets", json={
        "owner_party": "bank", "name": "credit_bank", "columns": [{"name": "id", "type": "int"}]})
    assert r.status_code == 201, r.text
    ds_id = r.json()["id"]
    analyst = w.ids["analyst"]
    console_login(w, "analyst")
    assert _post(w, f"/datasets/{ds_id}/grants", {"username": "analyst",
                                                  "permission": "manage"}) == 403
    console_login(w, "data_owner")
    page = w.client.get(f"{PREFIX}/datasets/{ds_id}")
    assert 'id="grant-form"' in page.text and 'name="username"' in page.text
    # a name nobody has, or no name, is a clear 422 that names the field; nothing changes
    for name, said in (("nobody", "there is no user 'nobody'"), ("", "is not a user name")):
        r = w.client.post(f"{PREFIX}/datasets/{ds_id}/grants", data={
            "csrf": re.findall(r'name="csrf" value="([0-9a-f]+)"', page.text)[0],
            "username": name, "permission": "use"}, follow_redirects=False)
        assert r.status_code == 422 and said in html.unescape(r.text) and "username" in r.text
    assert w.call("data_owner", "GET", f"/api/v1/datasets/{ds_id}/grants").json() == []
    assert _post(w, f"/datasets/{ds_id}/grants", {"username": " analyst ",
                                                  "permission": "use"}) == 303
    grants = w.call("data_owner", "GET", f"/api/v1/datasets/{ds_id}/grants").json()
    assert [(g["user_id"], g["username"], g["permission"]) for g in grants] == [
        (analyst, "analyst", "use")]

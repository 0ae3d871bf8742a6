"""Model versions in the console (the registry of «Model release», ``/api/v1/registry``):
the list and a version's page show its parties' part fingerprints and public metrics;
moving an alias is the API's tag call — its author (or an admin) only, audited."""

from __future__ import annotations

import json
import re
from pathlib import Path

from job_fill import SPEC
from platform_world import World, make_world
from test_console_pages import console_login

from sharedml.platform.console.web import PREFIX
from sharedml.platform.store.models import Job, ModelVersion


def _version(w: World) -> str:
    now = w.platform.clock.now()
    with w.platform.store.session() as s:
        s.add(Job(id="b" * 32, name="credit", spec=json.dumps(SPEC), state="succeeded",
                  progress=1.0, created_by=w.ids["analyst"], created_at=now, updated_at=now))
        s.flush()
        s.add(ModelVersion(uid="c" * 32, name="credit.train", version=1, job_id="b" * 32,
                           step="train", spec_hash="d" * 64, parties=["bank", "partner"],
                           fingerprints={"bank": "fp-bank", "partner": "fp-partner"},
                           metrics={"bank": {"rows": 700, "model": "logistic_regression"}},
                           created_by="analyst", created_at=now))
    return "c" * 32


def _post(w: World, path: str, data: dict[str, str]) -> int:
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', w.client.get(f"{PREFIX}/").text)
    assert token
    return w.client.post(PREFIX + path, data={"csrf": token.group(1), **data},
                         follow_redirects=False).status_code


def test_versions_show_fingerprints_and_metrics_and_the_author_moves_an_alias(
    tmp_path: Path,
) -> None:
    w = make_world(tmp_path)
    uid = _version(w)
    console_login(w, "analyst")
    listed = w.client.get(f"{PREFIX}/models")
    assert listed.status_code == 200 and f'href="{PREFIX}/models/{uid}"' in listed.text
    page = w.client.get(f"{PREFIX}/models/{uid}")
    assert page.status_code == 200
    parts = re.search(r'id="parts".*?</table>', page.text, re.S)
    assert parts and "fp-bank" in parts.group(0) and "fp-partner" in parts.group(0)
    assert re.search(r'id="model-metrics-bank".*?rows</th><td>700<', page.text, re.S)

    assert _post(w, f"/models/{uid}/alias", {"alias": "production"}) == 303
    assert "production" in w.client.get(f"{PREFIX}/models/credit.train@production").text
    tagged = w.platform.audit.query(action="model.tag", limit=5)
    assert [e.actor for e in tagged] == ["analyst"]
    # an auditor reads it but may not move an alias (registry.tag)
    console_login(w, "auditor")
    assert w.client.get(f"{PREFIX}/models/{uid}").status_code == 200
    assert _post(w, f"/models/{uid}/alias", {"alias": "candidate"}) == 403


def test_the_job_page_lists_the_versions_its_train_steps_registered(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    uid = _version(w)
    console_login(w, "analyst")
    page = w.client.get(f"{PREFIX}/jobs/{'b' * 32}")
    assert page.status_code == 200, page.text[:300]
    table = re.search(r'id="version-train".*?</table>', page.text, re.S)
    assert table and f"{PREFIX}/models/{uid}" in table.group(0) and "fp-partner" in table.group(0)

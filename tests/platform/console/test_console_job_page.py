"""The job page's figures come from the job's public result: scalar metrics, and for
tree models the splits per own feature each party reported (its feature importances)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from job_fill import SPEC
from platform_world import make_world
from test_console_pages import console_login

from sharedml.platform.console.web import PREFIX
from sharedml.platform.store.models import Job


def test_the_job_page_shows_each_partys_feature_importances(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    result = {"steps": {"train": {
        "bank": {"metrics": {"model": "secureboost", "feature_splits": {"age": 5, "debt": 2}}},
        "partner": {"metrics": {"model": "secureboost", "feature_splits": {"spend": 4}}}}}}
    now = w.platform.clock.now()
    with w.platform.store.session() as s:
        s.add(Job(id="a" * 32, name="trees", spec=json.dumps(SPEC), state="succeeded",
                  progress=1.0, created_by=w.ids["analyst"], created_at=now, updated_at=now,
                  result=result))
    console_login(w, "analyst")
    page = w.client.get(f"{PREFIX}/jobs/{'a' * 32}")
    assert page.status_code == 200, page.text[:500]
    bank = re.search(r'id="importance-train-bank".*?</table>', page.text, re.S)
    assert bank
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td><td><meter min=\"0\" max=\"(\d+)\"",
                      bank.group(0))
    assert rows == [("age", "5", "5"), ("debt", "2", "5")]
    partner = re.search(r'id="importance-train-partner".*?</table>', page.text, re.S)
    assert partner and "spend" in partner.group(0) and "age" not in partner.group(0)
    # the scalar table keeps the plain figures; the dict is drawn only as importances
    assert page.text.count("feature_splits") == 0

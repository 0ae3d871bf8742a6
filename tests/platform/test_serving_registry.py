"""``sharedml serve`` resolving versions in the platform's registry (issue 12 item 3).

A real model trained by ``sharedml run`` (its parts sealed in each party's part
store), registered on a real platform app (its registry filled as a job's train
tasks fill it, an alias set through the REST API), then resolved by the serving
processes' loader through the SDK with an API token: ``NAME@ALIAS`` loads this
party's own part, its fingerprint the platform's record; an alias the
registry does not hold, a version with no part at this party and a token
that may not read are refused with the step named.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from platform_world import World, make_world

from sharedml.errors import ConfigError
from sharedml.platform.store.models import Job, Task
from sharedml.sdk import Client
from sharedml.serving.parts import LabelPart, StoreParts
from sharedml.serving.versions_source import PlatformVersions
from sharedml.standalone import run_job
from sharedml.standalone.models import LocalRegistry


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> LocalRegistry:
    root = tmp_path_factory.mktemp("serve-registry")
    run_job({"name": "breast", "parties": {
        "guest": {"dataset": str(shared_data / "breast_hetero_guest.csv"), "label": "y"},
        "host": {"dataset": str(shared_data / "breast_hetero_host.csv")}},
        "steps": [{"psi": {}}, {"split": {}}, {"scale": {}},
                  {"train": {"model": "logistic_regression", "epochs": 1}}]},
        root / "out", embedded=True, models=root / "models")
    return LocalRegistry(root / "models")


def _register(w: World, uid: str, fingerprints: dict[str, str]) -> None:
    """What the scheduler does when a job's train step succeeds."""
    now = w.clock.now()
    with w.platform.store.session() as s:
        job = Job(name="breast", spec=json.dumps({"name": "breast", "parties": {}, "steps": []}),
                  created_by=w.ids["analyst"], created_at=now, updated_at=now)
        s.add(job)
        s.flush()
        tasks = [Task(job_id=job.id, party=p, step_id="train", component="train", created_at=now,
                      metrics={"model_uid": uid, "fingerprint": f}) for p, f in fingerprints.items()]
        w.platform.registry.record_job(s, job, tasks)


def test_serving_loads_name_at_alias_from_the_platform(trained: LocalRegistry,
                                                       tmp_path: Path) -> None:
    w = make_world(tmp_path)
    version = trained.resolve_text("breast@1")
    _register(w, version.uid, version.fingerprints)
    _register(w, "f" * 32, {"guest": "sha256:" + "0" * 64, "host": "sha256:" + "0" * 64})
    analyst = Client("http://testserver", w.tokens["analyst"], transport=w.client._transport)
    analyst.tag_model("breast@1", "production")
    analyst.tag_model("breast@2", "candidate")

    parts = StoreParts(trained.store("guest"), PlatformVersions(analyst))
    assert parts.resolve("breast@production") == version.uid
    served = parts.get("breast@production")
    assert isinstance(served, LabelPart) and served.info.version == version.uid
    assert served.info.fingerprint == version.fingerprints["guest"]
    assert parts.fingerprints(version.uid) == version.fingerprints
    with pytest.raises(ConfigError, match="serve: load"):  # no part of it at this party
        parts.get("breast@candidate")
    with pytest.raises(ConfigError, match="did not resolve 'breast@staging'") as info:
        parts.get("breast@staging")
    assert info.value.step == "serve: versions"

    stranger = Client("http://testserver", "not-a-token", transport=w.client._transport)
    with pytest.raises(ConfigError, match="did not resolve"):
        StoreParts(trained.store("guest"), PlatformVersions(stranger)).get("breast@production")

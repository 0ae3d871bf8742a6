"""Schemathesis against the platform's own OpenAPI spec, in-process: no input gives a 5xx (8.3-2).

Every operation is called with generated valid (positive) and invalid
(negative) inputs as an admin
(so the calls reach the operations, not just the auth check), with a bounded
number of examples per operation. The admin is restored before each call in
case a generated PATCH disabled or demoted them.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from platform_world import World, make_world  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from sqlalchemy import update  # noqa: E402

from sharedml.platform.store.models import ApiToken, User  # noqa: E402

pytestmark = pytest.mark.slow
#: Generated calls per operation: bounds the run to well under a minute.
EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    world = make_world(tmp_path_factory.mktemp("fuzz"))
    p = world.platform
    admin = p.auth.authenticate(world.tokens["admin"])
    _, token = p.auth.create_token(admin, "fuzz")
    world.tokens["fuzz"] = token
    project = p.projects.create(admin, "p1")
    ds = p.datasets.register(admin, owner_party="bank", name="d1", columns=[], project_id=project.id)
    p.grants.set(admin, world.ids["analyst"], "dataset", ds.id, "use")
    return world


def _restore_admin(world: World) -> None:
    with world.platform.store.session() as s:
        s.execute(
            update(User)
            .where(User.username == "admin")
            .values(role="admin", disabled=False, locked_until=None)
        )
        s.execute(update(ApiToken).values(revoked=False))


def test_no_input_makes_a_server_error(fuzz_world: World) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_world.app)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    ops = list(schema.get_all_operations())
    assert len(ops) >= 40
    for result, mode in itertools.product(ops, list(GenerationMode)):
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @given(case=operation.as_strategy(mode))
        def run(case: schemathesis.Case) -> None:
            _restore_admin(fuzz_world)
            response = case.call(headers={"Authorization": f"Bearer {fuzz_world.tokens['fuzz']}"})
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            case.validate_response(response, checks=[not_a_server_error])

        run()
    print(f"schemathesis: {len(ops)} operations, responses by status {dict(sorted(statuses.items()))}")
    assert failures == []
    # the run reached the operations: many calls succeeded, bad input was refused cleanly
    ok = sum(n for code, n in statuses.items() if code < 300)
    assert sum(statuses.values()) >= 5 * len(ops) and ok >= len(ops), statuses
    assert statuses[422] >= len(ops), statuses

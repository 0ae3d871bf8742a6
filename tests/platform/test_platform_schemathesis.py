"""Schemathesis against the platform's own OpenAPI spec, in-process: no input gives a 5xx (8.3-2).

Two runs: generated valid and invalid inputs per operation; and the same
operations with fuzzed headers (Authorization, Content-Type, X-Forwarded-For,
...) and raw bodies in place of JSON (issue 14: bodies and headers fuzzed).

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
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from platform_world import World, make_world  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core import NotSet  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from sqlalchemy import update  # noqa: E402

from sharedml.platform.store.models import ApiToken, User  # noqa: E402

pytestmark = pytest.mark.slow
#: Generated calls per operation: bounds the run to well under a minute.
EXAMPLES = 10
#: Calls per operation with fuzzed headers and raw bodies (CI: this many each).
HEADER_EXAMPLES = 8


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
    # this world runs no scheduler loop: tick for it, or /readyz rightly answers 503 ("the
    # scheduler loop has not ticked for 30 s") once the module has run for 30 s
    world.app.state.metrics.ticks.tick()
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
    no_negative: list[str] = []
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

        try:
            run()
        except Unsatisfiable:
            # an operation with no parameter or body has no invalid input to make; positive
            # mode must always generate
            if mode is not GenerationMode.NEGATIVE:
                raise
            no_negative.append(f"{operation.method.upper()} {operation.path}")
    print(f"schemathesis: {len(ops)} operations, responses by status {dict(sorted(statuses.items()))}"
          f"; nothing to negate in {no_negative}")
    assert failures == []
    # the run reached the operations: many calls succeeded, bad input was refused cleanly
    ok = sum(n for code, n in statuses.items() if code < 300)
    assert sum(statuses.values()) >= 5 * len(ops) and ok >= len(ops), statuses
    assert statuses[422] >= len(ops), statuses


#: Header names a client controls that the platform reads or its stack parses.
HEADER_NAMES = ["Authorization", "Content-Type", "X-Forwarded-For", "Accept", "Cookie",
                "Transfer-Encoding", "X-Request-Id", "Origin"]
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
headers = st.dictionaries(st.sampled_from(HEADER_NAMES), header_text, max_size=4)
bodies = st.one_of(st.binary(max_size=512), st.just(b'{"a": ' * 200),
                   header_text.map(lambda t: t.encode()))


def test_fuzzed_headers_and_raw_bodies_make_no_server_error(fuzz_world: World) -> None:
    """Every operation, its generated case with fuzzed headers (the bearer among them)
    and, where it takes a body, a raw one in place of the JSON: never a 5xx."""
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_world.app)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    token = {"Authorization": f"Bearer {fuzz_world.tokens['fuzz']}"}
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=HEADER_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy(GenerationMode.POSITIVE), extra=headers,
               raw=st.one_of(st.none(), bodies), keep_auth=st.booleans())
        def run(case: schemathesis.Case, extra: dict[str, str], raw: bytes | None,
                keep_auth: bool) -> None:
            _restore_admin(fuzz_world)
            sent = {**(token if keep_auth else {}), **extra}
            body = None if isinstance(case.body, NotSet) else case.body
            query = None if isinstance(case.query, NotSet) else case.query
            kwargs: dict[str, object] = (
                {"content": raw} if raw is not None and body is not None else {"json": body})
            try:
                response = fuzz_world.client.request(
                    case.method, case.formatted_path, headers=sent, params=query, **kwargs)
            except (UnicodeEncodeError, ValueError):
                return  # the client itself refused to send it (an illegal header value)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {extra}: "
                                f"{response.status_code}")

        run()
    print(f"schemathesis headers/bodies: responses by status {dict(sorted(statuses.items()))}")
    assert failures == []
    assert statuses[401] and statuses[422], statuses  # the fuzz reached auth and validation

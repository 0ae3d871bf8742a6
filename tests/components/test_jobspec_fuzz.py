"""Fuzzing the job-spec parser (issue 14, Must show): any text or structure a remote
user sends is a spec or one clean ConfigError — never another exception, never
a hang, never an error quoting the input at length (8.3-2).

Examples per run (CI): ``EXAMPLES`` for each strategy below. Inputs are YAML
and JSON text built from spec-shaped fragments (aliases, anchors, tags, deep
nesting, odd scalars), raw text, and mappings shaped like specs with random
values. A hang would show as hypothesis' deadline being exceeded.
"""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharedml.components import jobspec
from sharedml.errors import ConfigError

EXAMPLES = 300
FUZZ = settings(max_examples=EXAMPLES, deadline=30_000, database=None,
                suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=40,
)
components = st.sampled_from(["psi", "split", "train", "describe", "evaluate", "woe", "nope", ""])
steps = st.lists(st.one_of(
    st.dictionaries(components, values, min_size=1, max_size=2),
    st.builds(lambda c, p, i: {c: p, "id": i}, components, values, st.text(max_size=10)),
    values,
), max_size=6)
specs = st.fixed_dictionaries(
    {"parties": st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=6),
                                st.one_of(values, st.fixed_dictionaries(
                                    {"dataset": st.text(max_size=8), "label": scalars})),
                                max_size=3),
     "steps": steps},
    optional={"name": values, "scheme": st.sampled_from(["mpc", "tee", "x"])},
)
yaml_bits = st.sampled_from([
    "&a ", "*a", "<<: *a\n", "!!python/object:os.system ", "!!binary ", "? ", "- ", ": ",
    "[", "]", "{", "}", ",", "\n", "  ", "'", '"', "#", "|\n", ">\n", "%YAML 1.2\n", "---\n",
    "...\n", "\t", "\x00", "\ufeff", "parties:", "steps:", "psi", "1e999", ".inf", "~",
])
yaml_texts = st.lists(st.one_of(yaml_bits, st.text(max_size=5)), max_size=60).map("".join)


def _check(source: Any) -> None:
    try:
        jobspec.load(source)
    except ConfigError as exc:
        assert len(str(exc)) < 2000  # a message names fields; it never repeats the input


@FUZZ
@given(specs)
def test_spec_shaped_mappings_load_or_fail_cleanly(spec: dict[str, Any]) -> None:
    _check(spec)


@FUZZ
@given(specs)
def test_the_same_specs_as_json_and_yaml_text(spec: dict[str, Any]) -> None:
    text = json.dumps(spec, default=str)
    if "\n" not in text:
        text += "\n"  # one line would be taken for a file name
    _check(text)


@FUZZ
@given(yaml_texts)
def test_yaml_fragments_load_or_fail_cleanly(text: str) -> None:
    _check(text + "\n")


@settings(max_examples=50, deadline=30_000, database=None)
@given(st.integers(33, 3000), st.sampled_from(["[", "{a: ", "- "]))
def test_deep_nesting_is_refused_without_recursion(depth: int, opener: str) -> None:
    closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
    text = ("parties: " if opener != "- " else "parties:\n") + opener * depth + "1" + closer * depth
    try:
        jobspec.load(text + "\n")
    except ConfigError as exc:
        assert "deeper" in str(exc) or "not valid YAML" in str(exc)
    else:  # pragma: no cover - a spec this deep must not load
        raise AssertionError("a spec nested past the limit loaded")

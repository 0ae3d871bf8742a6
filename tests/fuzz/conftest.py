"""Fuzzing settings shared by every target (issue 14, "Must show": fuzzing).

Each target runs ``FUZZ_EXAMPLES`` hypothesis examples in CI (100 unless
``SHAREDML_FUZZ_EXAMPLES`` says otherwise; a long local run sets e.g. 20000).
A crash is any exception outside the parser's own refusal (a sharedml error);
a hang is an example over ``EXAMPLE_LIMIT_S`` seconds, or the test over its
pytest timeout. Hypothesis's own deadline is off: on a shared machine it would
report load, not the parser; the per-example limit is checked by :func:`bounded`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = int(os.environ.get("SHAREDML_FUZZ_EXAMPLES", "100"))
#: One parse of a small input taking longer than this is a hang (or a bomb).
EXAMPLE_LIMIT_S = 5.0

settings.register_profile(
    "fuzz", max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
FUZZ = settings.get_profile("fuzz")


@contextmanager
def bounded(what: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    took = time.monotonic() - start
    assert took < EXAMPLE_LIMIT_S, f"{what} took {took:.1f} s on one small input"


def refuses_only(kinds: tuple[type[BaseException], ...], fn: Callable[[], Any], what: str) -> Any:
    """``fn()``'s value, or ``None`` when it refused with one of ``kinds``; anything
    else (a crash) fails the example, as does taking too long."""
    with bounded(what):
        try:
            return fn()
        except kinds:
            return None

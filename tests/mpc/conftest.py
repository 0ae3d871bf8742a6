"""Run MPC party functions under each randomness provider.

``run_mpc(body, provider)`` runs ``body(mpc)`` at two computing parties
(alice, bob) with the named provider; with the dealer, a third thread serves
material. Results are returned by party.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sharedml.mpc import MPC, DealerProvider, serve_dealer
from sharedml.session import Session
from sharedml.standalone import run_in_threads

PARTIES = ("alice", "bob")


def make_runtime(session: Session, provider: str, trunc: str = "pair") -> MPC:
    if provider == "dealer":
        return MPC(session, DealerProvider(session, dealer="dealer"), trunc=trunc)
    from sharedml.mpc.he import HEProvider

    return MPC(session, HEProvider(session, key_bits=1024), trunc=trunc)


def run_mpc(
    body: Callable[[MPC], Any],
    provider: str = "dealer",
    *,
    parties: tuple[str, ...] = PARTIES,
    trunc: str = "pair",
    frac_bits: int = 16,
    wrap: Any = None,
) -> dict[str, Any]:
    def party(session: Session) -> Any:
        with make_runtime(session, provider, trunc) as mpc:
            return body(mpc)

    fns: dict[str, Any] = {p: party for p in parties}
    names = list(parties)
    if provider == "dealer":
        fns["dealer"] = serve_dealer
        names.append("dealer")
    return run_in_threads(fns, names, frac_bits=frac_bits, wrap=wrap, timeout=60)


@pytest.fixture(params=["dealer", "he"])
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)

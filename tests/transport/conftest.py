"""Fixtures for the transport tests: a deployment CA and live mTLS endpoints on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sharedml.crypto import pki
from sharedml.transport.grpc import GrpcEndpoint

PARTIES = ("a", "b", "c")


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment CA with certificates for parties a, b, c and 'mallory' (in no job)."""
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    for party in (*PARTIES, "mallory"):
        pki.issue(d, party)
    return d


@pytest.fixture(scope="session")
def endpoints(pki_dir: Path) -> Iterator[dict[str, GrpcEndpoint]]:
    """One live endpoint (mTLS server + connections) per party, shared by the session."""
    eps = {
        p: GrpcEndpoint(pki.load_identity(pki_dir, p), connect_timeout=10.0, admit_wait=5.0)
        for p in PARTIES
    }
    yield eps
    for ep in eps.values():
        ep.close(grace=0.2)


@pytest.fixture(scope="session")
def addresses(endpoints: dict[str, GrpcEndpoint]) -> dict[str, str]:
    return {p: ep.address for p, ep in endpoints.items()}

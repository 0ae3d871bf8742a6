"""The same PSI code over GrpcChannel: two processes with mutual TLS."""

from __future__ import annotations

import pytest

from sharedml.psi import digest_keys, psi_digests
from sharedml.session import Session
from sharedml.standalone import run_in_processes

A = [f"cust-{i}" for i in range(0, 3000)]
B = [f"cust-{i}" for i in range(2000, 4500)]


def _party(session: Session) -> list[int]:
    ids = A if session.party == "A" else B
    result = psi_digests(session, digest_keys(ids), workers=2, batch=512, protocol="ecdh")
    assert result.rows is not None
    return [int(ids[i].split("-")[1]) for i in result.rows]


@pytest.mark.slow
def test_psi_over_grpc_processes() -> None:
    out = run_in_processes(_party, ["A", "B"])
    assert out["A"] == out["B"]
    assert sorted(out["A"]) == list(range(2000, 3000))

"""Shared test fixtures.

Tests may read the reference data and attestation evidence in ``../shared``
(beside the repository root, in CI too); the product never does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: the vertically and horizontally split reference sets."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.fail(f"reference data not found at {path}; CI lays ../shared beside the clone")
    return path


@pytest.fixture(scope="session")
def tee_evidence() -> Path:
    """``../shared/tee-evidence``: real Nitro, SGX, TDX and SEV-SNP evidence."""
    path = SHARED / "tee-evidence"
    if not path.is_dir():
        pytest.fail(f"TEE evidence not found at {path}")
    return path

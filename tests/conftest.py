"""Shared test fixtures.

Tests read the reference data sets and attestation evidence vendored in
``tests/data/`` (provenance, licences and reference figures in
``tests/data/README.md``) through the fixtures below, never by a path of
their own; the product never reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``make test-parallel`` (``--dist loadgroup``): a test marked ``xdist_group``
    runs on its group's worker (``ray``: every test of ``tests/scale``, beside the one
    local Ray cluster); any other test is grouped by its file, so a file stays whole
    on one worker (its module's cluster or browser is set up once). Without xdist
    the marks change nothing."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


#: The vendored reference data (kept in the repository; see its README).
DATA = Path(__file__).resolve().parent / "data"


def _folder(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.fail(
            f"vendored test data not found at {path}; it is part of the repository "
            "(check out the whole tree, including tests/data)"
        )
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``tests/data/datasets``: the vertically and horizontally split reference sets."""
    return _folder("datasets")


@pytest.fixture(scope="session")
def tee_evidence() -> Path:
    """``tests/data/tee-evidence``: real Nitro, SGX, TDX and SEV-SNP evidence."""
    return _folder("tee-evidence")


@pytest.fixture(scope="session")
def model_doc() -> Callable[[str | Path], dict[str, Any]]:
    """Open a sealed model part (``model`` artifact of a train step) with the keys
    beside its store (``<store>/../keys``, as ``sharedml run`` and the step default
    lay them out); its learner document, as the learner's ``to_dict`` wrote it."""
    from sharedml.modelpart import FileNodeKeys, ModelPart

    def read(path: str | Path) -> dict[str, Any]:
        path = Path(path)
        part = ModelPart.unseal(path.read_bytes(), FileNodeKeys(path.parent.parent / "keys"))
        return dict(part.body["model"])

    return read

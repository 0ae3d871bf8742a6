"""One local Ray cluster for the scale-out tests, started by the tests themselves.

``ray.init(num_cpus=2)`` in this process: Ray starts its worker processes on
demand (two CPUs' worth of tasks, actors at half a CPU each, so both
parties' lanes fit). The whole folder is skipped, with the reason, only when
the ``ray`` extra is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sharedml.crypto import pki
from sharedml.scale.runtime import keep_token_auth

keep_token_auth()  # before ray is imported, as a node with address: local does
ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'sharedml[ray]')")

PARTIES = ("alice", "bob")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="sharedml-tests")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    for party in PARTIES:
        pki.issue(d, party)
    return d

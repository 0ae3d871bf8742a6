"""The public top-level surface is curated; changing it is a deliberate act."""

from __future__ import annotations

import importlib.metadata

import sharedml


def test_top_level_exports_are_pinned() -> None:
    assert sorted(sharedml.__all__) == sorted(
        [
            "AttestationError",
            "AuthError",
            "ChannelError",
            "ConfigError",
            "DataError",
            "NotFittedError",
            "PeerTimeout",
            "PeerUnreachable",
            "PolicyDenied",
            "ProtocolAbort",
            "Session",
            "SharedMLError",
            "__version__",
            "run_in_threads",
        ]
    )
    for name in sharedml.__all__:
        assert hasattr(sharedml, name), name


def test_version_matches_the_installed_package() -> None:
    assert sharedml.__version__ == importlib.metadata.version("sharedml")

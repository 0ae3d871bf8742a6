"""sharedml — shared machine learning without sharing data.

Several organisations train and use one model together; each keeps its data.
Two schemes (standard §5): MPC (secret sharing and homomorphic encryption
between the data providers) and TEE (an attested enclave).

The top level exports only what every user meets; algorithms live in
``sharedml.learn``, protocols in ``sharedml.mpc``, ``sharedml.psi`` and
``sharedml.tee``, the platform client in ``sharedml.sdk``.
"""

import importlib
from typing import TYPE_CHECKING, Any

from sharedml.errors import (
    AttestationError,
    AuthError,
    ChannelError,
    ConfigError,
    DataError,
    NotFittedError,
    PeerTimeout,
    PeerUnreachable,
    PolicyDenied,
    ProtocolAbort,
    SharedMLError,
)

if TYPE_CHECKING:
    from sharedml.session import Session
    from sharedml.standalone import run_in_threads

#: Imported on first use: ``Session`` pulls pandas and the protocols, which a command
#: such as ``sharedml job show`` never needs (each CLI command is a fresh process).
_LAZY = {"Session": "sharedml.session", "run_in_threads": "sharedml.standalone"}

__version__ = "0.1.0"

__all__ = [
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

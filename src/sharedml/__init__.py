"""sharedml — shared machine learning without sharing data.

Several organisations train and use one model together; each keeps its data.
Two schemes (standard §5): MPC (secret sharing and homomorphic encryption
between the data providers) and TEE (an attested enclave).

The top level exports only what every user meets; algorithms live in
``sharedml.learn``, protocols in ``sharedml.mpc``, ``sharedml.psi`` and
``sharedml.tee``, the platform client in ``sharedml.sdk``.
"""

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
from sharedml.session import Session
from sharedml.standalone import run_in_threads

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

"""One exception tree for sharedml.

Every error a user can see derives from :class:`SharedMLError`. Lower-level
errors (gRPC, HTTP, SQL, OS) are translated where they cross into sharedml, so
callers catch one family. A message names the party, the step and what to do.

::

    SharedMLError
    ├── ConfigError            a job spec, setting or parameter is wrong
    ├── DataError              a dataset is malformed (rows, columns, types, ids)
    ├── ChannelError           a message could not be sent or received
    │   ├── PeerTimeout        the peer did not send in time
    │   │   └── StepTimeout    the step did not finish within its timeout
    │   ├── PeerUnreachable    the peer could not be reached at all
    │   └── FrameError         a frame was malformed or lied about its size
    ├── ProtocolAbort          a protocol step saw an impossible or hostile message
    ├── AttestationError       evidence failed verification (deliberately opaque)
    ├── AuthError              a user or peer failed authentication
    ├── PolicyDenied           an authenticated caller is not allowed to do this
    └── NotFittedError         an estimator was used before ``fit``
"""

from __future__ import annotations


class SharedMLError(Exception):
    """Root of every sharedml error.

    ``party`` and ``step`` say where it happened, ``column`` which column of a
    dataset it concerns (its name, never a value), ``remedy`` what to do about
    it; each is optional and, when given, is appended to the message.
    """

    def __init__(
        self,
        message: str,
        *,
        party: str | None = None,
        step: str | None = None,
        remedy: str | None = None,
        column: str | None = None,
    ) -> None:
        self.party = party
        self.step = step
        self.remedy = remedy
        self.column = column
        parts = [message]
        where = ", ".join(
            f"{k} {v!r}" for k, v in (("party", party), ("step", step), ("column", column))
            if v is not None
        )
        if where:
            parts.append(f"({where})")
        if remedy:
            parts.append(f"— {remedy}")
        super().__init__(" ".join(parts))
        self.message = message


class ConfigError(SharedMLError):
    """A job spec, setting or parameter is invalid."""


class DataError(SharedMLError):
    """A dataset is malformed: rows, columns, types, ids or encoding."""


class ChannelError(SharedMLError):
    """A message could not be delivered or received."""


class PeerTimeout(ChannelError):
    """The peer sent nothing under the awaited tag within the timeout."""


class StepTimeout(PeerTimeout):
    """A job step did not finish within its step timeout (the run's, or the task's)."""


class PeerUnreachable(ChannelError):
    """The peer could not be reached (refused, unknown, or failed TLS)."""


class FrameError(ChannelError):
    """A frame on the wire was malformed, truncated or lied about its size."""


class ProtocolAbort(SharedMLError):
    """A protocol step received a message it must not accept."""


class AttestationError(SharedMLError):
    """Attestation evidence failed verification."""


class AuthError(SharedMLError):
    """Authentication failed (user, token, TOTP or peer certificate)."""


class PolicyDenied(SharedMLError):
    """The caller is authenticated but not permitted to perform the operation."""


class NotFittedError(SharedMLError, ValueError):
    """An estimator was used before ``fit``."""


__all__ = [
    "AttestationError",
    "AuthError",
    "ChannelError",
    "ConfigError",
    "DataError",
    "FrameError",
    "NotFittedError",
    "PeerTimeout",
    "PeerUnreachable",
    "PolicyDenied",
    "ProtocolAbort",
    "SharedMLError",
    "StepTimeout",
]

"""Platform-side members of the one exception tree (``sharedml.errors``).

The REST API maps the tree to HTTP once (``api/errors.py``): ConfigError and
DataError 422, :class:`NotFound` 404, :class:`Conflict` 409, AuthError 401,
:class:`LoginThrottled` 429, PolicyDenied 403.
"""

from __future__ import annotations

from sharedml.errors import AuthError, ConfigError


class NotFound(ConfigError):
    """The named user, project, dataset, job or other record does not exist."""


class Conflict(ConfigError):
    """The operation clashes with the current state (a duplicate name, a decided approval)."""


class LoginThrottled(AuthError):
    """Too many login attempts from one client or for one user in the last minute."""

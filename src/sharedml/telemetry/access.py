"""Who may read ``/metrics``: the operator's choice of a bearer token or a listener of its own.

``/metrics`` holds counts, states, durations and sizes — no row, label, model
or user data — but those still tell an outsider how busy a bank's risk team
is, which nodes are down and how long its jobs run. An operator chooses:

* ``token_file``: ``/metrics`` answers 401 unless the request carries
  ``Authorization: Bearer <the file's token>`` (compared in constant time);
  Prometheus reads the same file (``authorization: {credentials_file: ...}``).
  The file must be readable by its owner only (0600), like every key here.
* ``listen``: ``/metrics`` is served on an address of its own (e.g. a
  management network only Prometheus reaches); the platform's public API
  port then answers 404 there.

Both may be set. ``/healthz`` and ``/readyz`` stay open: probes say only
whether a process serves. The default (open unless one is set; ``sharedml up``
sets a token) is argued in docs/architecture.md §6, "Metrics access".
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from sharedml.secret_file import read_secret, write_secret

#: The header a scraper sends, and the challenge a refused one is answered with.
CHALLENGE = 'Bearer realm="metrics"'


class MetricsAccess(BaseModel):
    """``metrics:`` in node.yaml (or ``--metrics-*`` of ``sharedml platform serve``)."""

    model_config = ConfigDict(extra="forbid")

    #: ``host:port`` to serve /metrics, /healthz and /readyz on (plain HTTP).
    listen: str | None = None
    #: A file holding the bearer token /metrics requires (0600; ``sharedml up`` makes one).
    token_file: Path | None = None


def write_token(path: Path) -> Path:
    """A new random token (256 bits) in ``path``, readable by its owner only."""
    return write_secret(path, secrets.token_urlsafe(32))


def read_token(path: Path, who: str) -> bytes:
    """The token in ``path``; refuses a file others may read, or one under 16 characters."""
    remedy = (f"put a random token of 16+ characters in it, readable by its owner only "
              f"('openssl rand -hex 32 > {path}; chmod 600 {path}')")
    return read_secret(path, "the metrics token", who, remedy, min_length=16).encode()


def bearer_ok(authorization: str | None, token: bytes | None) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (always, when there is none)."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)

"""How a platform process starts: where its data lives, which database, where it listens.

These are start-up settings (a restart applies them); the runtime settings
that change while it runs are in ``runtime.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sharedml.errors import ConfigError
from sharedml.telemetry.access import MetricsAccess

log = logging.getLogger("sharedml.platform")


@dataclass(frozen=True)
class PlatformConfig:
    data_dir: Path
    #: ``None``: SQLite in ``data_dir``; else e.g. ``postgresql+psycopg://user:pw@host/db``.
    db_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8600
    certfile: Path | None = None
    keyfile: Path | None = None
    #: Proxies (addresses or networks) whose ``X-Forwarded-For`` names the client;
    #: from anyone else the header is ignored.
    trusted_proxies: tuple[str, ...] = ()
    #: ``scheme: tee`` jobs: the ``tee:`` section of the config file
    #: (:class:`~sharedml.platform.tee_config.TeeConfig`); ``None``: none run here.
    tee: Any = None
    #: Who may read ``/metrics`` (:mod:`sharedml.telemetry.access`): with ``token_file`` the
    #: API's ``/metrics`` needs its bearer token; with ``listen`` it is served there instead
    #: (``sharedml platform serve`` starts that listener) and the API's answers 404.
    metrics: MetricsAccess = field(default_factory=MetricsAccess)
    #: The deployment's PKI (``--pki-dir``): the platform dials enclave nodes with its
    #: ``platform`` certificate from it (mutual TLS over RA-TLS); ``None``: without one.
    pki_dir: Path | None = None


def https_files(
    certfile: Path | None, keyfile: Path | None, pki_dir: Path | None, insecure_http: bool
) -> tuple[Path, Path] | None:
    """The REST API's certificate and key, or ``None`` for plain HTTP (9.4-1).

    HTTPS by default: an operator's own certificate (``certfile``/``keyfile``), else
    the deployment CA's ``platform`` certificate in ``pki_dir``. Plain HTTP only when
    asked for (``insecure_http``), with a warning: bearer tokens and passwords then
    cross the network in clear.
    """
    if (certfile is None) != (keyfile is None):
        raise ConfigError("give both --certfile and --keyfile for HTTPS, or neither")
    if insecure_http:
        if certfile is not None:
            raise ConfigError("--insecure-http contradicts --certfile/--keyfile; choose one")
        log.warning("serving the REST API over plain HTTP (--insecure-http): passwords and "
                    "tokens cross the network in clear; use it only on a trusted loopback")
        return None
    if certfile is not None and keyfile is not None:
        return certfile, keyfile
    if pki_dir is not None:
        cert, key = pki_dir / "platform.pem", pki_dir / "platform.key"
        if not (cert.is_file() and key.is_file()):
            raise ConfigError(f"no platform.pem/platform.key in {pki_dir}",
                              remedy="issue the platform's certificate from the deployment CA")
        return cert, key
    raise ConfigError(
        "the REST API serves HTTPS only: no certificate given",
        remedy="pass --pki-dir (the deployment CA's 'platform' certificate) or --certfile and "
        "--keyfile (your own); --insecure-http serves plain HTTP, for a trusted loopback only",
    )

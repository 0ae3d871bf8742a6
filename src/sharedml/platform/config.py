"""How a platform process starts: where its data lives, which database, where it listens.

These are start-up settings (a restart applies them); the runtime settings
that change while it runs are in ``runtime.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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

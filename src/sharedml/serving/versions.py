"""Which model version the gateway serves: stable, canary and its share, rollback.

The routing table is one immutable :class:`Routing` value, replaced whole on
every change (a single reference swap on the gateway's event loop), so a
request routed before a switch finishes on the version it started with and
no request is dropped. A request goes to the canary when the bucket of its
first id (CRC-32 modulo 100) is below the canary's percentage: a customer
stays on one version while the percentage stays put.

The table is written to ``STATE_DIR/routing.json`` (mode 0600, atomically)
on every change and read back at start, so the served version survives a
restart.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from sharedml.errors import ConfigError
from sharedml.serving.parts import check_version_name

STATE_FILE = "routing.json"


@dataclass(frozen=True)
class Routing:
    stable: str | None = None
    canary: str | None = None
    percent: int = 0
    #: the stable version before the last promotion (what rollback returns to)
    previous: str | None = None

    def route(self, key: str) -> str | None:
        if self.canary is not None and zlib.crc32(key.encode()) % 100 < self.percent:
            return self.canary
        return self.stable

    def with_canary(self, version: str, percent: int) -> Routing:
        if not 0 <= percent <= 100:
            raise ConfigError(f"canary percentage must be 0-100, got {percent}",
                              step="serve: versions")
        if self.stable is None:
            return Routing(stable=check_version_name(version))
        return replace(self, canary=check_version_name(version), percent=percent)

    def promoted(self) -> Routing:
        if self.canary is None:
            raise ConfigError("there is no canary to promote", step="serve: versions",
                              remedy="start one with 'canary VERSION --percent N'")
        return Routing(stable=self.canary, previous=self.stable)

    def rolled_back(self) -> Routing:
        if self.canary is not None:
            return replace(self, canary=None, percent=0)
        if self.previous is None:
            raise ConfigError("nothing to roll back to (no canary, no earlier version)",
                              step="serve: versions")
        return Routing(stable=self.previous)

    def versions(self) -> list[str]:
        return [v for v in (self.stable, self.canary) if v is not None]


def load_routing(state_dir: Path) -> Routing:
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return Routing()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Routing(**{k: doc.get(k) for k in ("stable", "canary", "previous")},
                       percent=int(doc.get("percent") or 0))
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read the served versions in {path}: {exc}",
                          step="serve: start", remedy="restore the file or remove it") from None


def save_routing(state_dir: Path, routing: Routing) -> None:
    path = Path(state_dir) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(asdict(routing), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)

"""Where the command line finds the platform: a per-user config file, mode 0600.

``sharedml login`` writes a *profile* (platform URL, API token, user name,
optional CA file and a data owner's approval key file) and makes it current; ``sharedml up`` writes one for its
admin. The ``job`` commands read the current profile (or ``--profile``,
``SHAREDML_PROFILE``); ``--url``/``--token`` and ``SHAREDML_URL``/
``SHAREDML_TOKEN`` still win. The file is ``$SHAREDML_CONFIG``, else
``$XDG_CONFIG_HOME/sharedml/config.json``, else ``~/.config/sharedml/config.json``.
It holds bearer tokens: it is created 0600 and rewritten atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sharedml.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    url: str
    token: str
    user: str = ""
    ca: str | None = None
    #: A data owner's approval key (``sharedml approval keygen``) for ``job approve``.
    approval_key: str | None = None


def path() -> Path:
    explicit = os.environ.get("SHAREDML_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sharedml" / "config.json"


def _read() -> dict[str, Any]:
    file = path()
    if not file.exists():
        return {"current": None, "profiles": {}}
    try:
        data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    except ValueError:
        raise ConfigError(f"{file} is not valid JSON", remedy="delete it and log in again") from None
    data.setdefault("profiles", {})
    return data


def load(name: str | None = None) -> Profile | None:
    """The named profile, else ``$SHAREDML_PROFILE``, else the current one (None: no login)."""
    data = _read()
    wanted = name or os.environ.get("SHAREDML_PROFILE") or data.get("current")
    if not wanted:
        return None
    raw = data["profiles"].get(wanted)
    if raw is None:
        raise ConfigError(f"no profile {wanted!r} in {path()}",
                          remedy=f"log in with 'sharedml login', or use one of "
                                 f"{sorted(data['profiles'])}")
    return Profile(**raw)


def save(name: str, profile: Profile, *, current: bool = True) -> Path:
    """Store ``profile`` under ``name`` (0600, atomic); make it current unless told not to."""
    data = _read()
    data["profiles"][name] = asdict(profile)
    if current or not data.get("current"):
        data["current"] = name
    file = path()
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, file)
    return file

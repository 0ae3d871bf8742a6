"""Runtime settings (8.6-5): changed through the API, in force at once, audited.

Values live in the ``settings`` table; every read goes to the database, so a
change made by one request (or one platform process) is seen by the next
without a restart. Unknown keys and out-of-range values are refused with the
name of the setting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from sharedml.errors import ConfigError
from sharedml.platform.audit import AuditLog
from sharedml.platform.clock import Clock
from sharedml.platform.store import Store
from sharedml.platform.store.models import Setting


class RuntimeSettings(BaseModel):
    """Every runtime setting, with its default and its bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_idle_minutes: int = Field(30, ge=1, le=1440, description="idle session expiry (9.2-2)")
    session_max_hours: int = Field(12, ge=1, le=168, description="absolute session lifetime")
    lockout_threshold: int = Field(5, ge=1, le=100, description="failed logins before lock-out")
    lockout_minutes: int = Field(15, ge=1, le=10080, description="lock-out duration")
    login_rate_per_minute: int = Field(20, ge=1, le=10000, description="login attempts per client")
    task_timeout_s: float = Field(3600.0, gt=0, le=7 * 86400, description="default task timeout")
    task_max_attempts: int = Field(3, ge=1, le=20, description="default attempts per task")
    heartbeat_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="node silence before failure"
    )
    token_max_days: int = Field(90, ge=1, le=365, description="longest API token lifetime")
    token_idle_days: int = Field(30, ge=1, le=365, description="API token unused this long ends")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    require_totp: bool = Field(
        False, description="console users without TOTP must enrol before anything else (9.1-3)"
    )


class SettingsService:
    """Reads and changes :class:`RuntimeSettings` in the store."""

    def __init__(self, store: Store, clock: Clock, audit: AuditLog) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._listeners: list[Callable[[RuntimeSettings], None]] = []

    def subscribe(self, listener: Callable[[RuntimeSettings], None]) -> None:
        """Call ``listener`` now and after every change (components that cache a setting)."""
        self._listeners.append(listener)
        listener(self.current())

    def current(self) -> RuntimeSettings:
        with self._store.reading() as s:
            rows = s.scalars(select(Setting)).all()
            stored = {r.key: json.loads(r.value) for r in rows}
        known = {k: v for k, v in stored.items() if k in RuntimeSettings.model_fields}
        return RuntimeSettings.model_validate(known)

    def update(self, changes: dict[str, Any], actor: str) -> RuntimeSettings:
        """Validate and store ``changes``; audited with the old and new values."""
        unknown = sorted(set(changes) - set(RuntimeSettings.model_fields))
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {unknown}",
                remedy=f"use one of {sorted(RuntimeSettings.model_fields)}",
            )
        old = self.current()
        try:
            new = RuntimeSettings.model_validate({**old.model_dump(), **changes})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
        diff = {k: [getattr(old, k), getattr(new, k)] for k in changes}
        now = self._clock.now()
        with self._store.session() as s:
            for key in changes:
                value = json.dumps(getattr(new, key))
                row = s.get(Setting, key)
                if row is None:
                    s.add(Setting(key=key, value=value, updated_at=now, updated_by=actor))
                else:
                    row.value, row.updated_at, row.updated_by = value, now, actor
            self._audit.append_in(s, actor, "settings.change", "settings",
                                  detail={"changes": diff})
        apply_log_level(new)
        for listener in self._listeners:
            listener(new)
        return new


def apply_log_level(settings: RuntimeSettings) -> None:
    logging.getLogger("sharedml").setLevel(settings.log_level)

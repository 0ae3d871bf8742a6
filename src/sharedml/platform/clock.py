"""Time, injected (STYLE.md 9): everything that checks an expiry asks a clock.

:class:`SystemClock` is the real one; :class:`ManualClock` is a real clock
whose time moves only when told (tests advance it past the 30-minute idle
limit instead of sleeping).
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class ManualClock:
    """A clock that stands still until :meth:`advance` or :meth:`set` moves it."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float = 0.0, **kwargs: float) -> dt.datetime:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds, **kwargs)
            return self._now

    def set(self, when: dt.datetime) -> None:
        with self._lock:
            self._now = when

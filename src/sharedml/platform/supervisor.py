"""``sharedml up``'s supervisor loop: a crashed platform or node is started again (8.3-5).

What systemd's ``Restart=on-failure`` and compose's ``restart:`` do for a
deployment on several hosts, for the processes of a deployment on one
machine. A process that exits is started again after a pause that doubles
with each crash (1 s, 2 s, 4 s, ... at most 30 s) and is reset once it has
stayed up for a minute; one that crashes more than ``max_crashes`` times in
``window_s`` is given up on, with its log's tail, so a process that cannot
start does not spin. The restarted node says hello with a new boot id: the
platform fails the tasks it ran (their steps are retried on every party) and
the node resumes its jobs from its saved state (:mod:`sharedml.node.job_state`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sharedml.errors import SharedMLError

log = logging.getLogger("sharedml.platform.supervisor")

#: The platform's process name (as :mod:`sharedml.platform.local_deployment` names it).
PLATFORM = "platform"


class Supervised(Protocol):
    """What the supervisor needs of a deployment (:class:`LocalDeployment` has it)."""

    root: Path

    def exited(self) -> dict[str, int | None]: ...
    def forget(self, name: str) -> None: ...
    def log_tail(self, name: str, chars: int = 2000) -> str: ...
    def start_platform(self) -> None: ...
    def start_node(self, party: str) -> None: ...


@dataclass
class _Record:
    crashes: deque[float] = field(default_factory=deque)
    pause_s: float = 1.0
    due: float = 0.0
    started: float = 0.0


@dataclass
class Supervisor:
    deployment: Supervised
    max_crashes: int = 5
    window_s: float = 120.0
    clock: Callable[[], float] = time.monotonic
    _records: dict[str, _Record] = field(default_factory=dict)

    def check(self) -> list[str]:
        """Start again every process that exited and whose pause is over; returns their names."""
        now = self.clock()
        restarted = []
        for name, code in self.deployment.exited().items():
            record = self._records.setdefault(name, _Record())
            if record.due == 0.0:  # first seen dead: count the crash, schedule the restart
                self._crashed(name, code, record, now)
            if now >= record.due:
                self._restart(name)
                record.due, record.started = 0.0, now
                restarted.append(name)
        for record in self._records.values():
            if record.started and now - record.started > 60.0:
                record.pause_s = 1.0  # stayed up: the next crash restarts quickly again
        return restarted

    def _crashed(self, name: str, code: int | None, record: _Record, now: float) -> None:
        record.crashes.append(now)
        while record.crashes and now - record.crashes[0] > self.window_s:
            record.crashes.popleft()
        if len(record.crashes) > self.max_crashes:
            raise SharedMLError(
                f"{name} crashed {len(record.crashes)} times in {self.window_s:g} s (last exit "
                f"code {code}); not restarting it:\n{self.deployment.log_tail(name)}",
                remedy=f"see {self.deployment.root / 'logs' / (name + '.log')}",
            )
        record.due = now + record.pause_s
        log.warning("%s exited with code %s; starting it again in %g s", name, code,
                    record.pause_s)
        record.pause_s = min(record.pause_s * 2, 30.0)

    def _restart(self, name: str) -> None:
        self.deployment.forget(name)
        if name == PLATFORM:
            self.deployment.start_platform()
        else:
            self.deployment.start_node(name)
        log.warning("%s started again", name)

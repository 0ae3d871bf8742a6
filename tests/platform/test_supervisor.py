"""The supervisor loop of ``sharedml up`` (8.3-5): pauses that double, and a give-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sharedml.errors import SharedMLError
from sharedml.platform.supervisor import Supervisor


@dataclass
class Processes:
    """A deployment whose processes the test kills and the supervisor starts."""

    root: Path = Path("/nonexistent")
    dead: dict[str, int | None] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    def exited(self) -> dict[str, int | None]:
        return dict(self.dead)

    def forget(self, name: str) -> None:
        self.dead.pop(name, None)

    def log_tail(self, name: str, chars: int = 2000) -> str:
        return f"{name}: Traceback ... ImportError"

    def start_platform(self) -> None:
        self.started.append("platform")

    def start_node(self, party: str) -> None:
        self.started.append(party)


def test_a_crash_is_restarted_after_a_pause_that_doubles() -> None:
    now = [0.0]
    procs = Processes()
    supervisor = Supervisor(procs, clock=lambda: now[0])
    procs.dead["shop"] = -9
    assert supervisor.check() == []  # seen dead: restart in 1 s
    now[0] += 1.0
    assert supervisor.check() == ["shop"] and procs.started == ["shop"]
    procs.dead["shop"] = 1
    now[0] += 5.0
    assert supervisor.check() == []
    now[0] += 1.0
    assert supervisor.check() == []  # the second pause is 2 s
    now[0] += 1.0
    assert supervisor.check() == ["shop"]
    procs.dead["platform"] = 1
    now[0] += 1.0
    supervisor.check()
    now[0] += 1.0
    assert supervisor.check() == ["platform"] and procs.started[-1] == "platform"


def test_a_process_that_keeps_crashing_is_given_up_on_with_its_log() -> None:
    now = [0.0]
    procs = Processes()
    supervisor = Supervisor(procs, max_crashes=2, window_s=100, clock=lambda: now[0])
    for _ in range(2):
        procs.dead["bank"] = 1
        supervisor.check()
        now[0] += 30.0
        assert supervisor.check() == ["bank"]
    procs.dead["bank"] = 1
    with pytest.raises(SharedMLError, match="crashed 3 times") as err:
        supervisor.check()
    assert "ImportError" in str(err.value)
    assert procs.started == ["bank", "bank"]


def test_crashes_outside_the_window_do_not_count() -> None:
    now = [0.0]
    procs = Processes()
    supervisor = Supervisor(procs, max_crashes=1, window_s=10, clock=lambda: now[0])
    for _ in range(4):
        procs.dead["bank"] = 1
        supervisor.check()
        now[0] += 40.0
        assert supervisor.check() == ["bank"]

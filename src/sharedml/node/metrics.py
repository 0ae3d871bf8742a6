"""A node's metrics and its per-task log (issue 13 item 7).

Prometheus metrics of one node agent, in its own registry (served by
:class:`sharedml.telemetry.http.HealthServer` at the config's ``metrics:``):
heartbeats, tasks by component and result, task durations, bytes sent to and
received from each peer, running tasks, and this process's CPU and memory.
Every finished task also appends one JSON line to ``work_dir/tasks.jsonl``:
job, step, attempt, party, component, result, seconds and bytes per peer; a
failure gives the error's class, not its message — messages may quote a bad
value, and this log holds **no data values**, only sizes and times.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter as Tally
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sharedml.telemetry.process import ProcessCollector
from sharedml.transport.base import Channel
from sharedml.transport.codec import Value

_SECONDS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class ByteCount(Channel):
    """Wraps a task's channel; counts payload bytes to and from each peer (sizes only)."""

    def __init__(self, inner: Channel) -> None:
        super().__init__(inner.party, inner.peers, inner.job, inner.timeout)
        self.inner = inner
        self.sent: Tally[str] = Tally()
        self.received: Tally[str] = Tally()
        self._lock = threading.Lock()

    def _send(self, to: str, tag: str, value: Value) -> None:
        self.inner._send(to, tag, value)
        with self._lock:
            self.sent[to] += _size(value)

    def _recv(self, frm: str, tag: str, timeout: float) -> Value:
        value = self.inner._recv(frm, tag, timeout)
        with self._lock:
            self.received[frm] += _size(value)
        return value

    def close(self) -> None:
        self.inner.close()


def _size(value: Value) -> int:
    return len(value) if isinstance(value, bytes) else int(value.nbytes)


@dataclass(frozen=True)
class TaskRecord:
    """One finished task, as the log and the metrics see it."""

    job: str
    step: str
    attempt: int
    party: str
    component: str
    ok: bool
    seconds: float
    sent: dict[str, int]
    received: dict[str, int]
    error: str = ""


class NodeMetrics:
    """The metrics of one node agent and its task log."""

    def __init__(self, party: str, work_dir: Path) -> None:
        self.party = party
        self.registry = CollectorRegistry()
        r = self.registry
        self.heartbeats = Counter("sharedml_node_heartbeats", "heartbeats the platform answered",
                                  registry=r)
        self.last_heartbeat = Gauge("sharedml_node_last_heartbeat_timestamp_seconds",
                                    "when the platform last answered a heartbeat", registry=r)
        self.connected = Gauge("sharedml_node_platform_connected",
                               "1 while the platform answers, else 0", registry=r)
        self.running = Gauge("sharedml_node_running_tasks", "tasks running now", registry=r)
        self.tasks = Counter("sharedml_node_tasks", "finished tasks",
                             ["component", "result"], registry=r)
        self.task_seconds = Histogram("sharedml_node_task_seconds", "task durations",
                                      ["component"], buckets=_SECONDS, registry=r)
        self.bytes_sent = Counter("sharedml_node_bytes_sent", "payload bytes sent, per peer",
                                  ["peer"], registry=r)
        self.bytes_received = Counter("sharedml_node_bytes_received",
                                      "payload bytes received, per peer", ["peer"], registry=r)
        r.register(ProcessCollector("node"))
        self.log_path = Path(work_dir) / "tasks.jsonl"
        self._log_lock = threading.Lock()

    def beat(self, ok: bool) -> None:
        self.connected.set(1 if ok else 0)
        if ok:
            self.heartbeats.inc()
            self.last_heartbeat.set(time.time())

    def task_done(self, record: TaskRecord) -> None:
        """Count a finished task and append its line to the task log."""
        result = "ok" if record.ok else "failed"
        self.tasks.labels(record.component, result).inc()
        self.task_seconds.labels(record.component).observe(record.seconds)
        for peer, n in record.sent.items():
            self.bytes_sent.labels(peer).inc(n)
        for peer, n in record.received.items():
            self.bytes_received.labels(peer).inc(n)
        line = {"time": round(time.time(), 3), "job": record.job, "step": record.step,
                "attempt": record.attempt, "party": record.party,
                "component": record.component, "result": result,
                "seconds": round(record.seconds, 4),
                "bytes_sent": dict(record.sent), "bytes_received": dict(record.received)}
        if record.error:
            line["error"] = record.error
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_lock, open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, sort_keys=True) + "\n")

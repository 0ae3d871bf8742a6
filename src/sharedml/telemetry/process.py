"""CPU and memory of this process as Prometheus metrics (psutil: Linux, macOS, Windows)."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class ProcessCollector(Collector):
    """``sharedml_process_*{role=...}``: read at each scrape, nothing kept between."""

    def __init__(self, role: str) -> None:
        self.role = role
        self._proc = psutil.Process()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        with self._proc.oneshot():
            cpu = self._proc.cpu_times()
            rss = self._proc.memory_info().rss
            threads = self._proc.num_threads()
        seconds = CounterMetricFamily("sharedml_process_cpu_seconds",
                                      "CPU time of this process (user + system)", labels=["role"])
        seconds.add_metric([self.role], cpu.user + cpu.system)
        memory = GaugeMetricFamily("sharedml_process_resident_memory_bytes",
                                   "resident memory of this process", labels=["role"])
        memory.add_metric([self.role], float(rss))
        count = GaugeMetricFamily("sharedml_process_threads", "threads of this process",
                                  labels=["role"])
        count.add_metric([self.role], float(threads))
        yield from (seconds, memory, count)

"""Monitoring every process shares: Prometheus metrics, health and readiness (issue 13 item 7).

Runs in the platform's process and in every node agent's; it sees counts,
durations, sizes and states — never a row, a label, a share or a key.

* :mod:`.process` — CPU seconds, resident memory and threads of this process;
* :mod:`.http` — a small HTTP server for ``/metrics``, ``/healthz`` and
  ``/readyz`` (node agents; the platform serves the same paths from its API).
"""

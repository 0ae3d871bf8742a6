"""``/metrics``, ``/healthz`` and ``/readyz`` over plain HTTP, in a daemon thread.

``/healthz`` answers 200 while ``alive()`` is true (the process's loop runs),
``/readyz`` 200 while ``ready()`` is true (e.g. a node has said hello to the
platform), 503 otherwise, each with a one-line JSON reason; ``/metrics`` is
the registry in Prometheus' text format — to a request with the bearer token
when one is given (:mod:`sharedml.telemetry.access`). Bind it where your
Prometheus reaches it and no one else needs to: it serves counters and
states, no data.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sharedml.errors import ConfigError
from sharedml.telemetry.access import CHALLENGE, bearer_ok


class HealthServer:
    """Serves one registry and two probes until :meth:`close`."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry,
        alive: Callable[[], bool], ready: Callable[[], bool], token: bytes | None = None,
    ) -> None:
        handler = _handler(registry, alive, ready, token)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc}",
                              remedy="choose a free port for 'metrics:'") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(registry: CollectorRegistry, alive: Callable[[], bool],
             ready: Callable[[], bool], token: bytes | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics" and not bearer_ok(self.headers.get("Authorization"), token):
                self._reply(401, b'{"status": "a bearer token is required"}', "application/json",
                            challenge=True)
            elif self.path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                ok = alive() if self.path == "/healthz" else alive() and ready()
                body = json.dumps({"status": "ok" if ok else "unavailable"}).encode()
                self._reply(200 if ok else 503, body, "application/json")
            else:
                self._reply(404, b'{"status": "no such path"}', "application/json")

        def _reply(self, code: int, body: bytes, kind: str, challenge: bool = False) -> None:
            self.send_response(code)
            if challenge:
                self.send_header("WWW-Authenticate", CHALLENGE)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
            return

    return Handler

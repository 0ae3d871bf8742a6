"""How the partner's serving node takes gRPC calls: the designs compared on one echo RPC.

The node (``sharedml serve node``) answers the gateway's unary ``Score`` calls
on a synchronous ``grpc.server`` with a thread pool of 8 workers. This bench
puts the designs side by side, each in a server process of its own on
loopback with mutual TLS (the deployment's PKI), a handler that only echoes
40 bytes (what is measured is the RPC machinery, not scoring), and a
``grpc.aio`` client on uvloop in this process — as the gateway calls:

* ``pool``: ``grpc.server`` + ``ThreadPoolExecutor(8)``, unary (what the node runs);
* ``aio``: ``grpc.aio.server``, the handler a coroutine on the server's loop, unary;
* ``stream``: ``grpc.server`` + pool, a long-lived bidirectional stream per
  concurrent client carrying its requests (no call set-up per request; a
  stream holds a worker for its life, so 64 workers; not built: it needs
  request ids, per-request deadlines and reconnects of its own).

Per design, at concurrency 1 and 64: p50/p99 latency, requests/s, and the
server's and the client's CPU ms per request (from /proc and
``time.process_time``), the figures that do not depend on the machine's load as
much as latency does. The baseline is ``pool``, in the same run; ``ratio`` is
the server CPU per request against it.

    .venv/bin/python bench/serving_grpc.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import report
from serving import cpu_seconds

SERVICE = "bench.v1.Echo"
DESIGNS = ("pool", "aio", "stream")


def _credentials(pki_dir: Path) -> grpc.ServerCredentials:
    from sharedml.crypto import pki

    me = pki.load_identity(pki_dir, "partner")
    return grpc.ssl_server_credentials([(me.key_pem, me.cert_pem)], root_certificates=me.ca_pem,
                                       require_client_auth=True)


def _handlers(unary: Any) -> Any:
    def echo_stream(requests: Any, context: Any) -> Any:
        yield from requests

    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.stream_stream_rpc_method_handler(echo_stream)})


def serve(design: str, pki_dir: Path, port_file: Path) -> None:
    """Run one design's server until killed; its port goes to ``port_file``."""
    from concurrent.futures import ThreadPoolExecutor

    if design == "aio":
        async def echo(request: bytes, context: Any) -> bytes:
            return request

        async def main() -> None:
            server = grpc.aio.server()
            server.add_generic_rpc_handlers((_handlers(echo),))
            port_file.write_text(str(server.add_secure_port("127.0.0.1:0", _credentials(pki_dir))))
            await server.start()
            await server.wait_for_termination()

        asyncio.run(main())
        return
    # a stream holds a worker for its life: 64 workers, one per stream at c=64
    server = grpc.server(ThreadPoolExecutor(max_workers=64 if design == "stream" else 8))
    server.add_generic_rpc_handlers((_handlers(lambda request, context: request),))
    port_file.write_text(str(server.add_secure_port("127.0.0.1:0", _credentials(pki_dir))))
    server.start()
    server.wait_for_termination()


async def _drive(design: str, pki_dir: Path, port: int, c: int, seconds: float,
                 server_pid: int) -> dict[str, float]:
    from sharedml.crypto import pki
    from sharedml.transport.grpc_endpoint import client_options

    me = pki.load_identity(pki_dir, "bank")
    channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(
        me.ca_pem, me.key_pem, me.cert_pem), options=client_options("partner"))
    lat: list[float] = []

    async def worker(until: float, record: bool) -> None:
        if design == "stream":
            stream = channel.stream_stream(f"/{SERVICE}/Stream")()
        unary = channel.unary_unary(f"/{SERVICE}/Unary")
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            if design == "stream":
                await stream.write(b"x" * 40)
                await stream.read()
            else:
                await unary(b"x" * 40, timeout=5)
            if record:
                lat.append(time.perf_counter() - t0)
        if design == "stream":
            await stream.done_writing()

    await worker(time.perf_counter() + 0.5, False)  # warm-up
    cpu0, server0 = time.process_time(), cpu_seconds(server_pid)
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + seconds, True) for _ in range(c)))
    took = time.perf_counter() - start
    n = len(lat)
    client_ms = (time.process_time() - cpu0) * 1e3 / n
    server_ms = (cpu_seconds(server_pid) - server0) * 1e3 / n
    await channel.close()
    ms = np.asarray(lat) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "req_s": n / took, "server_cpu_ms": server_ms, "client_cpu_ms": client_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)  # DESIGN PKI PORT_FILE
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], Path(args.serve[1]), Path(args.serve[2]))
        return
    import uvloop

    from sharedml.crypto import pki

    work = Path(tempfile.mkdtemp(prefix="bench-serving-grpc-"))
    pki.init_ca(work)
    for party in ("bank", "partner"):
        pki.issue(work, party)
    rows: list[dict[str, Any]] = []
    for design in DESIGNS:
        port_file = work / f"port-{design}"
        proc = subprocess.Popen([sys.executable, __file__, "--serve", design, str(work),
                                 str(port_file)])
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            for c in (1, 64):
                got = uvloop.run(_drive(design, work, int(port_file.read_text()), c,
                                        args.seconds, proc.pid))
                rows.append({"design": design, "c": c, **got})
        finally:
            proc.kill()
            proc.wait()
    base = {r["c"]: r["server_cpu_ms"] for r in rows if r["design"] == "pool"}
    for r in rows:
        r["ratio"] = r["server_cpu_ms"] / base[r["c"]]
    report("the serving node's gRPC server designs (echo RPC, mutual TLS, loopback; client on "
           "the same cores)", rows, {"load": os.getloadavg()[0], "cores": os.cpu_count()})


if __name__ == "__main__":
    main()

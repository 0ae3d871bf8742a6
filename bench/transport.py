"""GrpcChannel against a raw TLS socket: bulk throughput (8 MiB arrays) and small round trips.

Both run between the same two OS processes — parties ``a`` and ``b`` started
by :func:`sharedml.standalone.processes.run_in_processes` on loopback, with mutual TLS and the
certificates of the run's fresh CA — and their trials alternate, so both see
the same machine load (this machine is small and shared):

* **GrpcChannel** — ``a`` sends ``--arrays`` float64 arrays of 8 MiB to ``b``
  back to back and waits for one acknowledgement; then 16-byte round trips.
* **raw TLS socket** (the baseline) — Python :mod:`ssl` over one TCP
  connection with the same certificates: length-prefixed frames received
  with ``recv_into`` into a preallocated buffer; the same two workloads.

Goals (issue 2): GrpcChannel reaches at least 50% of the raw socket's
throughput, and its median 16-byte round trip is at most 1 ms. Medians over
``--trials`` runs after one warm-up. Run: ``.venv/bin/python bench/transport.py``.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import struct
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np

from sharedml.session import Session
from sharedml.standalone.processes import run_in_processes
from sharedml.transport import Channel
from sharedml.transport.grpc import GrpcChannel

ARRAY_BYTES = 8 << 20
PING_BYTES = 16
PING_BLOCK = 100
_OP = struct.Struct("<cQ")  # op, payload length


# -- the raw TLS socket baseline -------------------------------------------------------
def _recv_exact(sock: ssl.SSLSocket, view: memoryview) -> None:
    while view:
        n = sock.recv_into(view)
        if n == 0:
            raise ConnectionError("peer closed")
        view = view[n:]


def _tls_context(session: Session, directory: str, server: bool) -> ssl.SSLContext:
    """An mTLS context from this party's own certificate, key and CA (written to ``directory``)."""
    if not isinstance(session.channel, GrpcChannel):
        raise TypeError("the transport bench runs under run_in_processes (GrpcChannel)")
    identity = session.channel.endpoint.identity
    cert, key, ca = (Path(directory, name) for name in ("me.pem", "me.key", "ca.pem"))
    cert.write_bytes(identity.cert_pem)
    key.touch(mode=0o600)
    key.write_bytes(identity.key_pem)
    ca.write_bytes(identity.ca_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _serve_tls(ctx: ssl.SSLContext, listener: socket.socket) -> None:
    """Sink frames; acknowledge ``A`` frames, echo ``E`` frames, until the client leaves."""
    raw, _ = listener.accept()
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with ctx.wrap_socket(raw, server_side=True) as sock:
        head = bytearray(_OP.size)
        buffers: dict[int, bytearray] = {}
        while True:
            try:
                _recv_exact(sock, memoryview(head))
            except (ConnectionError, OSError):
                return
            op, size = _OP.unpack(head)
            buf = buffers.setdefault(size, bytearray(size))  # preallocated, like the receiver
            _recv_exact(sock, memoryview(buf))
            if op == b"A":
                sock.sendall(_OP.pack(b"K", 0))
            elif op == b"E":
                sock.sendall(_OP.pack(b"E", size) + bytes(buf))


def _tls_bulk(sock: ssl.SSLSocket, payload: np.ndarray, arrays: int) -> float:
    start = time.perf_counter()
    view = payload.data.cast("B")
    for i in range(arrays):
        sock.sendall(_OP.pack(b"A" if i == arrays - 1 else b"S", payload.nbytes))
        sock.sendall(view)
    _recv_exact(sock, memoryview(bytearray(_OP.size)))
    return ARRAY_BYTES * arrays / (time.perf_counter() - start) / 1e6


def _tls_ping(sock: ssl.SSLSocket) -> float:
    reply = bytearray(_OP.size + PING_BYTES)
    start = time.perf_counter()
    sock.sendall(_OP.pack(b"E", PING_BYTES) + b"x" * PING_BYTES)
    _recv_exact(sock, memoryview(reply))
    return (time.perf_counter() - start) * 1e3


# -- GrpcChannel, with the baseline interleaved between the same two processes ----------
def _grpc_bulk(ch: Channel, payload: np.ndarray, arrays: int) -> float:
    start = time.perf_counter()
    for _ in range(arrays):
        ch.send("b", "bulk", payload)
    ch.recv("b", "ack")
    return ARRAY_BYTES * arrays / (time.perf_counter() - start) / 1e6


def _grpc_ping(ch: Channel, ping: np.ndarray) -> float:
    start = time.perf_counter()
    ch.send("b", "ping", ping)
    ch.recv("b", "pong")
    return (time.perf_counter() - start) * 1e3


def sender(cfg: dict[str, int], session: Session) -> dict[str, dict[str, list[float]]]:
    """Party a: alternate TLS and gRPC trials so both see the same machine load."""
    ch = session.channel
    payload = np.random.default_rng(0).random(ARRAY_BYTES // 8)
    ping = np.frombuffer(b"x" * PING_BYTES, dtype=np.uint8)
    out: dict[str, dict[str, list[float]]] = {
        name: {"bulk_MBps": [], "rtt_ms": []} for name in ("tls", "grpc")
    }
    port = int(np.asarray(ch.recv("b", "tls-port"))[0])
    with tempfile.TemporaryDirectory() as d:
        ctx = _tls_context(session, d, server=False)
        raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with ctx.wrap_socket(raw, server_hostname="b") as sock:
        for trial in range(cfg["trials"] + 1):  # trial 0 warms up
            tls, grpc = (
                _tls_bulk(sock, payload, cfg["arrays"]),
                _grpc_bulk(ch, payload, cfg["arrays"]),
            )
            if trial:
                out["tls"]["bulk_MBps"].append(tls)
                out["grpc"]["bulk_MBps"].append(grpc)
        for block in range(cfg["pings"] // PING_BLOCK + 1):  # block 0 warms up
            tls_rtts = [_tls_ping(sock) for _ in range(PING_BLOCK)]
            grpc_rtts = [_grpc_ping(ch, ping) for _ in range(PING_BLOCK)]
            if block:
                out["tls"]["rtt_ms"] += tls_rtts
                out["grpc"]["rtt_ms"] += grpc_rtts
    return out


def receiver(cfg: dict[str, int], session: Session) -> None:
    """Party b: serve the TLS baseline in a thread; answer gRPC on the main thread."""
    ch = session.channel
    with tempfile.TemporaryDirectory() as d:
        ctx = _tls_context(session, d, server=True)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        server = threading.Thread(target=_serve_tls, args=(ctx, listener), daemon=True)
        server.start()
        ch.send("a", "tls-port", np.array([listener.getsockname()[1]]))
        for _ in range(cfg["trials"] + 1):
            for _ in range(cfg["arrays"]):
                got = ch.recv("a", "bulk")
            if not isinstance(got, np.ndarray) or got.nbytes != ARRAY_BYTES:
                raise ValueError("bulk array arrived damaged")
            ch.send("a", "ack", b"k")
        for _ in range((cfg["pings"] // PING_BLOCK + 1) * PING_BLOCK):
            ch.send("a", "pong", ch.recv("a", "ping"))
        server.join(timeout=30)


def main() -> None:
    from _common import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", type=int, default=16, help="8 MiB arrays per bulk trial")
    parser.add_argument("--pings", type=int, default=1000, help="16-byte round trips")
    parser.add_argument("--trials", type=int, default=5, help="bulk trials (after one warm-up)")
    args = parser.parse_args()
    cfg = {"arrays": args.arrays, "pings": args.pings, "trials": args.trials}
    out = run_in_processes(
        {"a": partial(sender, cfg), "b": partial(receiver, cfg)}, ["a", "b"], job="bench"
    )["a"]
    rows = []
    for name, res in (("raw TLS socket (baseline)", out["tls"]), ("GrpcChannel", out["grpc"])):
        rows.append(
            {
                "transport": name,
                "bulk MB/s (median)": statistics.median(res["bulk_MBps"]),
                "bulk MB/s (min..max)": f"{min(res['bulk_MBps']):.0f}..{max(res['bulk_MBps']):.0f}",
                "16 B round trip ms (median)": statistics.median(res["rtt_ms"]),
                "round trip ms (p90)": float(np.percentile(res["rtt_ms"], 90)),
            }
        )
    ratio = rows[1]["bulk MB/s (median)"] / rows[0]["bulk MB/s (median)"]
    rtt = rows[1]["16 B round trip ms (median)"]
    print(
        f"GrpcChannel throughput = {ratio:.0%} of the raw TLS socket (goal >= 50%); "
        f"median round trip {rtt:.3f} ms (goal <= 1 ms)"
    )
    report(
        "transport",
        rows,
        {
            "throughput_ratio": ratio,
            "grpc_rtt_ms": rtt,
            "goals_met": bool(ratio >= 0.5 and rtt <= 1.0),
            "array_bytes": ARRAY_BYTES,
            "arrays_per_trial": args.arrays,
            "trials": args.trials,
            "pings": args.pings,
        },
    )


if __name__ == "__main__":
    main()

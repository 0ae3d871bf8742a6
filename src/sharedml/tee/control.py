"""A local control socket: length-prefixed JSON requests on a Unix socket (mode 0600).

Used between processes of one host and one operator — the simulated quoting
process and the enclave that asks it, the running ``sharedml tee cluster``
service and the ``sharedml tee`` commands that steer it. A frame is
``u32 length || UTF-8 JSON object``; nothing is pickled.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sharedml.errors import PeerUnreachable

MAX_FRAME = 1 << 20


def send_frame(sock: socket.socket, obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    if n > MAX_FRAME:
        raise ValueError("frame too large")
    body = _recv_exact(sock, n)
    if body is None:
        return None
    obj = json.loads(body)
    if not isinstance(obj, dict):
        raise ValueError("frame is not an object")
    return obj


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def listen(path: str | Path) -> socket.socket:
    """A listening Unix socket at ``path`` that only this user can connect to."""
    path = str(path)
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        srv.bind(path)
    finally:
        os.umask(old)
    srv.listen(8)
    return srv


def serve(srv: socket.socket, handle: Callable[[dict[str, Any]], dict[str, Any]],
          done: Callable[[], bool] = lambda: False) -> None:
    """Answer requests one connection at a time until ``done()``."""
    while not done():
        try:
            conn, _ = srv.accept()
        except OSError:
            return  # the socket was closed: shutting down
        with conn:
            try:
                while (req := recv_frame(conn)) is not None:
                    send_frame(conn, handle(req))
            except (OSError, ValueError):
                continue


def request(path: str | Path, obj: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """One request and its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            send_frame(s, obj)
            answer = recv_frame(s)
    except OSError as exc:
        raise PeerUnreachable(f"no control socket at {path}: {exc}", step="control",
                              remedy="start the service first (e.g. 'sharedml tee cluster up')") from None
    if answer is None:
        raise PeerUnreachable(f"{path} closed without answering", step="control")
    return answer

"""The simulated quoting process and the enclave's client to it.

Run as ``python -m sharedml.tee.attestation.simqe --platform DIR --manifest FILE
--socket PATH``: it measures the manifest's code at start (not the enclave),
then answers on a Unix socket (mode 0600) with length-prefixed JSON:

- ``{"op": "quote", "report_data": hex, "user_data": hex}`` → ``{"evidence": json}``
- ``{"op": "seal_key", "svn": n}`` → ``{"key": hex}`` (only for n ≤ the measured svn)

Errors come back as ``{"error": message}``. Nothing is pickled.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from sharedml.errors import AttestationError, SharedMLError
from sharedml.tee.attestation.base import Attester, Evidence, report_data_for
from sharedml.tee.attestation.sim import Manifest, SimQuoter

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


def _handle(quoter: SimQuoter, req: dict[str, Any]) -> dict[str, Any]:
    try:
        if req.get("op") == "quote":
            ev = quoter.quote(bytes.fromhex(req["report_data"]), bytes.fromhex(req.get("user_data", "")))
            return {"evidence": ev.to_json()}
        if req.get("op") == "seal_key":
            return {"key": quoter.seal_key(int(req["svn"])).hex()}
        if req.get("op") == "info":
            return {"svn": quoter.manifest.svn, "product_id": quoter.manifest.product_id}
        return {"error": f"unknown op {req.get('op')!r}"}
    except (SharedMLError, ValueError, KeyError, TypeError) as exc:
        return {"error": str(exc)}


def serve(quoter: SimQuoter, path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        srv.bind(path)
    finally:
        os.umask(old)
    srv.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        with conn:
            try:
                while (req := recv_frame(conn)) is not None:
                    send_frame(conn, _handle(quoter, req))
            except (OSError, ValueError):
                continue


class SimAttester(Attester):
    """The enclave's side: asks the quoting process for evidence over its socket."""

    backend = "sim"

    def __init__(self, socket_path: str | Path) -> None:
        self._path = str(socket_path)

    def _call(self, req: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self._path)
            send_frame(s, req)
            resp = recv_frame(s)
        if resp is None or "error" in resp:
            raise AttestationError(
                f"quoting process refused: {resp.get('error') if resp else 'no answer'}",
                step="attest",
            )
        return resp

    def attest(self, nonce: bytes, public_key: bytes, user_data: bytes = b"") -> Evidence:
        rd = report_data_for(nonce, public_key)
        resp = self._call({"op": "quote", "report_data": rd.hex(), "user_data": user_data.hex()})
        return Evidence.from_json(resp["evidence"])

    def seal_key(self, svn: int) -> bytes:
        return bytes.fromhex(self._call({"op": "seal_key", "svn": svn})["key"])

    def svn(self) -> int:
        return int(self._call({"op": "info"})["svn"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="sharedml-simqe")
    ap.add_argument("--platform", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--socket", required=True)
    args = ap.parse_args(argv)
    try:
        quoter = SimQuoter(args.platform, Manifest.from_json(Path(args.manifest).read_text()))
    except SharedMLError as exc:
        print(f"refused: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    serve(quoter, args.socket)


if __name__ == "__main__":
    main()
